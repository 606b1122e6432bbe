L = open('c.rs').read().split('\n')
def r(a, b):  # 1-based inclusive
    return '\n'.join(L[a-1:b]) + '\n'
def pub_super(s, names):
    for n in names:
        s = s.replace(f'\nfn {n}(', f'\npub(super) fn {n}(').replace(f'\nstruct {n} ', f'\npub(super) struct {n} ')
    return s
out = {}
out['inputs.rs'] = (
"//! What the controller is given: its rules, and what it knows of the site at one step.\n\n"
"use serde::{Deserialize, Serialize};\n\n"
"/// One minute, µs.\npub(super) const MINUTE_US: i64 = 60_000_000;\n\n"
+ r(46,108) + "\n" + r(130,139) + "\n" + r(141,143) + "\n" + r(145,159) + "\n" + r(161,163) + "\n" + r(165,170) + "\n" + r(172,209))
out['state.rs'] = (
"//! What the controller remembers of a site between steps.\n\n"
"use std::collections::BTreeMap;\n\nuse serde::{Deserialize, Serialize};\n\n"
+ r(110,128) + "\n" + r(211,218) + "\n" + r(220,243))
made = r(503,526).replace("struct Made {\n    rule", "pub(super) struct Made {\n    pub(super) rule")
for f in ['mode','from','target_kw','load_kw','expected_kw','allowance_kw']:
    made = made.replace(f"\n    {f}: ", f"\n    pub(super) {f}: ")
made = made.replace("    fn decision(", "    pub(super) fn decision(")
out['decision.rs'] = (
"//! What a step decides, and why.\n\n"
"use serde::{Deserialize, Serialize};\n\nuse super::state::Mode;\n\n"
+ r(245,325) + "\n" + made)
out['fans.rs'] = (
"//! The fans: a level from the temperature bands with hysteresis and a dwell, 9 in failsafe and\n//! emergency, or an operator's pin.\n\n"
"use super::decision::{Action, Rule};\nuse super::inputs::{ControlRules, Inputs};\nuse super::state::{Mode, SiteControl};\n\n"
+ r(398,413) + "\n" + pub_super(r(528,565), ['fans'])
+ "\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n" + r(1099,1111).replace('    #[test]','    #[test]',1) + "}\n")
out['load.rs'] = (
"//! Moving the load toward the target: an emergency's sleep for every machine, or shedding\n//! (least efficient first) and waking (most efficient first) within the ramp.\n\n"
"use super::decision::{Action, Decision, Made, Rule};\nuse super::inputs::{ControlRules, Inputs, MachineInput};\nuse super::state::{MachineControl, Mode, SiteControl};\n\n"
+ pub_super(r(567,590), ['emergency']) + "\n" + pub_super(r(592,658), ['toward_target']) + "\n" + r(660,705) + "\n" + r(707,756))
tests = r(758,1096) + r(1112,1140)
out['mod.rs'] = (r(1,39)
+ "mod decision;\nmod fans;\nmod inputs;\nmod load;\nmod state;\n\n"
+ "pub use decision::{Action, Decision, Rule};\npub use inputs::{ControlRules, GridEvent, Inputs, MachineInput};\npub use state::{MachineControl, Mode, SiteControl};\n\n"
+ "use decision::Made;\nuse inputs::MINUTE_US;\n\n"
+ r(327,377) + "\n" + r(379,396) + "\n" + r(415,442) + "\n" + r(444,500) + "\n" + tests)
for k,v in out.items():
    open('out/controller/'+k,'w').write(v)
