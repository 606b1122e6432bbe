//! Replies of real firmware (Braiins OS, Whatsminer, Antminer) read into readings and states, and
//! the implausible, empty or refused ones turned away by name.

use super::*;

/// A guard that lets the tests reach their loopback miners.
fn any() -> adit_egress::Guard {
    adit_egress::Guard::new(
        adit_egress::Purpose::Devices,
        adit_egress::policy::Rules::parse(&["loopback".to_string()]).expect("rules"),
    )
}
use serde_json::json;

/// An Antminer S9 on stock bmminer: `summary+stats`, with bmminer's missing comma between
/// the two `STATS` entries, absent boards reported as 0.
const S9_SUMMARY_STATS: &str = concat!(
    r#"{"summary":[{"STATUS":[{"STATUS":"S","When":1577590607,"Code":11,"Msg":"Summary","Description":"bmminer 1.0.0"}],"#,
    r#""SUMMARY":[{"Elapsed":86342,"GHS 5s":"13856.42","GHS av":13784.61,"Found Blocks":0,"Getworks":5824,"Accepted":10243,"Rejected":12,"Hardware Errors":331,"Utility":7.12,"Discarded":21012,"Stale":0,"Get Failures":0,"Local Work":1349214,"Remote Failures":0,"Network Blocks":146,"Total MH":1190143829553.0000,"Work Utility":192512.15,"Difficulty Accepted":276914176.00000000,"Difficulty Rejected":327680.00000000,"Difficulty Stale":0.00000000,"Best Share":4163713519,"Device Hardware%":0.0001,"Device Rejected%":0.1183,"Pool Rejected%":0.1182,"Pool Stale%":0.0000,"Last getwork":1577590607}],"id":1}],"#,
    r#""stats":[{"STATUS":[{"STATUS":"S","When":1577590607,"Code":70,"Msg":"CGMiner stats","Description":"bmminer 1.0.0"}],"#,
    r#""STATS":[{"BMMiner":"2.0.0","Miner":"16.8.1.3","CompileTime":"Fri Nov 17 17:37:49 CST 2017","Type":"Antminer S9"}"#,
    r#"{"STATS":0,"ID":"BC50","Elapsed":86342,"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"GHS 5s":"13856.42","GHS av":13784.61,"miner_count":3,"frequency":"650","fan_num":2,"fan1":0,"fan2":0,"fan3":5880,"fan4":0,"fan5":0,"fan6":5760,"fan7":0,"fan8":0,"temp_num":3,"temp1":0,"temp2":0,"temp3":0,"temp4":0,"temp5":0,"temp6":61,"temp7":58,"temp8":63,"temp9":0,"temp10":0,"temp2_1":0,"temp2_2":0,"temp2_3":0,"temp2_4":0,"temp2_5":0,"temp2_6":76,"temp2_7":73,"temp2_8":79,"temp2_9":0,"temp_max":63,"Device Hardware%":0.0001,"no_matching_work":331,"chain_acn6":63,"chain_acn7":63,"chain_acn8":63,"chain_acs6":" oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo ooooooo","chain_hw6":105,"chain_hw7":98,"chain_hw8":128,"chain_rate6":"4623.12","chain_rate7":"4598.77","chain_rate8":"4634.53"}],"id":1}],"id":1}"#,
    "\0"
);

/// Braiins OS (BOSminer) answering `summary+temps+fans+tunerstatus+pools+devs`.
const BOSMINER_JOINED: &str = concat!(
    r#"{"summary":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":11,"Msg":"Summary","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"#,
    r#""SUMMARY":[{"Elapsed":6051,"MHS av":13998542.37,"MHS 5s":14035622.66,"MHS 1m":14038010.92,"MHS 5m":14023125.51,"MHS 15m":14009963.12,"Found Blocks":0,"Getworks":1947,"Accepted":1936,"Rejected":0,"Hardware Errors":2,"Utility":19.2,"Discarded":0,"Stale":0,"Get Failures":0,"Local Work":247832,"Remote Failures":0,"Network Blocks":10,"Total MH":84704160398.0,"Work Utility":195432.1,"Difficulty Accepted":19709952.0,"Difficulty Rejected":0.0,"Difficulty Stale":0.0,"Best Share":1261183,"Device Hardware%":0.0,"Device Rejected%":0.0,"Pool Rejected%":0.0,"Pool Stale%":0.0,"Last getwork":1684941022}],"id":1}],"#,
    r#""temps":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":201,"Msg":"3 Temp(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"TEMPS":[{"TEMP":6,"ID":6,"Board":57.0,"Chip":71.875},{"TEMP":7,"ID":7,"Board":55.5,"Chip":69.125},{"TEMP":8,"ID":8,"Board":59.0,"Chip":74.5}],"id":1}],"#,
    r#""fans":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":202,"Msg":"2 Fan(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"FANS":[{"FAN":0,"ID":0,"RPM":4080,"Speed":70},{"FAN":1,"ID":1,"RPM":4200,"Speed":70}],"id":1}],"#,
    r#""tunerstatus":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":203,"Msg":"Tuner Status","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"TUNERSTATUS":[{"PowerLimit":1300,"DynamicPowerScaling":"Disabled","ApproximateChainPowerConsumption":1158,"ApproximateMinerPowerConsumption":1251,"TunerChainStatus":[{"HashchainIndex":6,"Iteration":0,"LoadedProfile":true,"ApproximatePowerConsumptionWatt":386,"PowerLimitWatt":405,"Status":"Stable"}]}],"id":1}],"#,
    r#""pools":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":7,"Msg":"1 Pool(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"POOLS":[{"POOL":0,"URL":"stratum+tcp://eu.stratum.braiins.com:3333","Status":"Alive","Priority":0,"Quota":1,"Long Poll":"N","Getworks":1947,"Accepted":1936,"Rejected":0,"Works":0,"Discarded":0,"Stale":0,"Get Failures":0,"Remote Failures":0,"User":"farm.s9-17","Last Share Time":1684941015,"Stratum Active":true,"Stratum URL":"eu.stratum.braiins.com"}],"id":1}],"#,
    r#""devs":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":9,"Msg":"3 ASC(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"DEVS":[{"ASC":0,"Name":"","ID":6,"Enabled":"Y","Status":"Alive","Temperature":71.875,"MHS av":4666180.79,"MHS 5s":4678540.88,"MHS 1m":4679336.97},{"ASC":1,"Name":"","ID":7,"Enabled":"Y","Status":"Alive","Temperature":69.125,"MHS av":4666180.79,"MHS 5s":4678540.89,"MHS 1m":4679336.98},{"ASC":2,"Name":"","ID":8,"Enabled":"Y","Status":"Alive","Temperature":74.5,"MHS av":4666180.79,"MHS 5s":4678540.89,"MHS 1m":4679336.97}],"id":1}],"id":1}"#
);

/// A Whatsminer M30S `summary`: its figures are all in the one section.
const WHATSMINER_SUMMARY: &str = r#"{"STATUS":[{"STATUS":"S","Msg":"Summary","Code":11,"When":1643362121,"Description":"btminer"}],"SUMMARY":[{"Elapsed":20507,"MHS av":84893421.44,"MHS 5s":84941366.02,"MHS 1m":84958471.31,"MHS 5m":84941366.02,"MHS 15m":84969424.09,"HS RT":84941366.02,"Accepted":804,"Rejected":0,"Total MH":225043191209.0000,"Temperature":80.00,"freq_avg":646,"Fan Speed In":4530,"Fan Speed Out":4560,"Power":3593,"Power Rate":42.31,"Pool Rejected%":0.0000,"Pool Stale%":0.0000,"Last getwork":0,"Uptime":20507,"Security Mode":0,"Chip Temp Min":71.56,"Chip Temp Max":96.50,"Chip Temp Avg":86.62,"Env Temp":31.00}],"id":1}"#;

/// An Antminer S17 whose boards have not started: every figure 0, sensors `"-"`.
const S17_IDLE_STATS: &str = r#"{"STATUS":[{"STATUS":"S","When":1577590607,"Code":70,"Msg":"CGMiner stats","Description":"cgminer 1.0.0"}],"STATS":[{"BMMiner":"2.0.0","Miner":"","CompileTime":"Fri Jun 14 12:39:27 HKT 2019","Type":"Antminer S17"},{"STATS":0,"ID":"BTM_SOC0","Elapsed":1374,"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"GHS 5s":"0.00","GHS av":0.00,"Voltage":"","Mode":2,"miner_count":0,"frequency":"","fan_num":0,"fan1":0,"fan2":0,"fan3":0,"fan4":0,"temp_num":0,"temp1":0,"temp2":0,"temp3":0,"temp2_1":0,"temp2_2":0,"temp2_3":0,"temp3_1":0,"temp3_2":0,"temp3_3":0,"temp_pcb1":"-","temp_pcb2":"-","temp_chip1":"-","temp_chip2":"-"}],"id":1}"#;

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn report(raw: &str) -> MinerReport {
    let value = decode_reply(raw.as_bytes()).expect("decodes");
    parse_report(&value).expect("parses")
}

fn out_of_range(result: Result<MinerReport, DeviceError>) -> (String, f64) {
    match result {
        Err(DeviceError::OutOfRange { field, value }) => (field, value),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
}

fn garbage_reason(result: Result<impl std::fmt::Debug, DeviceError>) -> String {
    match result {
        Err(DeviceError::Garbage { reason, .. }) => reason,
        other => panic!("expected Garbage, got {other:?}"),
    }
}

#[test]
fn reads_a_bmminer_s9_with_its_missing_comma() {
    let r = report(S9_SUMMARY_STATS);
    assert!(approx(r.hashrate_hs, 13856.42e9), "{r:?}");
    assert_eq!(r.temp_c, Some(79.0));
    assert_eq!(r.fan_rpm, Some(5880.0));
    assert_eq!(r.power_w, None);
    assert_eq!(r.state, MinerState::Mining);
}

#[test]
fn reads_a_bosminer_joined_reply() {
    let r = report(BOSMINER_JOINED);
    assert!(approx(r.hashrate_hs, 14035622.66e6), "{r:?}");
    assert_eq!(r.temp_c, Some(74.5));
    assert_eq!(r.fan_rpm, Some(4200.0));
    assert_eq!(r.power_w, Some(1251.0));
    assert_eq!(r.state, MinerState::Mining);
}

#[test]
fn reads_a_plain_whatsminer_summary() {
    let r = report(WHATSMINER_SUMMARY);
    assert!(approx(r.hashrate_hs, 84941366.02e6), "{r:?}");
    assert_eq!(r.temp_c, Some(96.5));
    assert_eq!(r.fan_rpm, Some(4560.0));
    assert_eq!(r.power_w, Some(3593.0));
    assert_eq!(r.state, MinerState::Mining);
}

#[test]
fn a_miner_with_no_hashrate_is_idle_and_its_empty_sensors_are_skipped() {
    let r = report(S17_IDLE_STATS);
    assert_eq!(r.hashrate_hs, 0.0);
    assert_eq!(r.temp_c, None);
    assert_eq!(r.fan_rpm, Some(0.0));
    assert_eq!(r.state, MinerState::Idle);
}

#[test]
fn newer_antminer_temperature_strings_and_arrays_are_read() {
    let reply = json!({"STATUS":[{"STATUS":"S","Code":70}],"STATS":[
        {"Type":"Antminer S19"},
        {"GHS 5s":"95123.40","temp_pcb1":"50-50-66-66","temp_chip1":"55-55-71-82","chain_power":"3250 W",
         "chain":[{"index":0,"temp_chip":[60,61,88.5,62]}]}
    ]});
    let r = parse_report(&reply).expect("parses");
    assert_eq!(r.temp_c, Some(88.5));
    assert_eq!(r.power_w, Some(3250.0));
    assert!(approx(r.hashrate_hs, 95123.4e9));
}

#[test]
fn a_rolling_rate_named_after_another_log_interval_is_read() {
    let reply = json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"MHS 20s":"1500.5"}]});
    let r = parse_report(&reply).expect("parses");
    assert!(approx(r.hashrate_hs, 1500.5e6));
}

#[test]
fn error_statuses_and_dead_boards_make_an_error_state() {
    let failed = json!({"STATUS":[{"STATUS":"E","Code":10,"Msg":"No ASCs"}],"id":1});
    assert_eq!(
        parse_report(&failed).expect("parses").state,
        MinerState::Error
    );
    let fatal = json!({"summary":[{"STATUS":[{"STATUS":"F","Code":-1,"Msg":"99"}]}]});
    assert_eq!(
        parse_report(&fatal).expect("parses").state,
        MinerState::Error
    );

    let dead = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"MHS 5s":100.0}]}],
        "devs":[{"STATUS":[{"STATUS":"S"}],"DEVS":[{"Enabled":"Y","Status":"Dead","MHS 5s":0.0}]}]});
    let r = parse_report(&dead).expect("parses");
    assert_eq!(r.state, MinerState::Error);
    assert!(approx(r.hashrate_hs, 100e6));
}

#[test]
fn a_command_the_firmware_lacks_is_ignored_but_refusing_everything_is_garbage() {
    let partly = json!({
        "summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"10.00"}]}],
        "tunerstatus":[{"STATUS":[{"STATUS":"E","When":1,"Code":14,"Msg":"Invalid command"}],"id":1}],
    });
    let r = parse_report(&partly).expect("parses");
    assert_eq!(r.state, MinerState::Mining);
    assert!(approx(r.hashrate_hs, 10e9));

    let refused =
        json!({"STATUS":[{"STATUS":"E","When":1,"Code":14,"Msg":"Invalid command"}],"id":1});
    let reason = garbage_reason(parse_report(&refused));
    assert!(reason.contains("Invalid command"), "{reason}");
}

#[test]
fn a_dead_pool_or_disabled_boards_are_not_mining() {
    let no_pool = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"10.00"}]}],
        "pools":[{"STATUS":[{"STATUS":"S"}],"POOLS":[{"POOL":0,"Status":"Dead"}]}]});
    assert_eq!(
        parse_report(&no_pool).expect("parses").state,
        MinerState::Idle
    );
    let asleep = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"0.00"}]}],
        "devs":[{"STATUS":[{"STATUS":"S"}],"DEVS":[{"Enabled":"N","Status":"Alive"},{"Enabled":"N","Status":"Alive"}]}]});
    assert_eq!(
        parse_report(&asleep).expect("parses").state,
        MinerState::Sleeping
    );
}

#[test]
fn implausible_values_are_refused_by_name() {
    let with = |item: Value| json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[item]});
    assert_eq!(
        out_of_range(parse_report(&with(
            json!({"GHS 5s":"10","Temperature":400.0})
        ))),
        ("Temperature".to_string(), 400.0)
    );
    assert_eq!(
        out_of_range(parse_report(&with(json!({"MHS 5s":-5.0})))),
        ("MHS 5s".to_string(), -5.0)
    );
    assert_eq!(
        out_of_range(parse_report(&with(json!({"GHS 5s":"1e12"})))),
        ("GHS 5s".to_string(), 1e12)
    );
    assert_eq!(
        out_of_range(parse_report(&with(json!({"GHS 5s":"1","fan1":-20})))).0,
        "fan1"
    );
    assert_eq!(
        out_of_range(parse_report(&with(json!({"GHS 5s":"1","Power":-3})))).0,
        "Power"
    );
    let (field, value) = out_of_range(parse_report(&with(json!({"GHS 5s":"nan"}))));
    assert_eq!(field, "GHS 5s");
    assert!(value.is_nan());
    let (field, value) = out_of_range(parse_report(&with(
        json!({"GHS 5s":"1","temp_chip1":"60-nan-61"}),
    )));
    assert_eq!(field, "temp_chip1");
    assert!(value.is_nan());
}

#[test]
fn replies_without_figures_are_garbage() {
    let reason = garbage_reason(parse_report(&json!({"SUMMARY":[{"GHS 5s":"1"}]})));
    assert!(reason.contains("no STATUS"), "{reason}");
    let reason = garbage_reason(parse_report(
        &json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[{}]}),
    ));
    assert!(reason.contains("no hashrate"), "{reason}");
    let reason = garbage_reason(parse_report(&json!({"STATUS":[{"STATUS":"X"}]})));
    assert!(reason.contains("STATUS"), "{reason}");
    let reason = garbage_reason(parse_report(&json!([1, 2])));
    assert!(reason.contains("not a JSON object"), "{reason}");
}

#[test]
fn decoding_strips_the_nul_and_whitespace() {
    let v = decode_reply(b" {\"STATUS\":[{\"STATUS\":\"S\"}],\"id\":1}\0\n").expect("decodes");
    assert_eq!(v["id"], 1);
}

#[test]
fn decoding_repairs_separator_faults_outside_strings_only() {
    let cases: &[(&str, Value)] = &[
        (r#"{"a":[{"x":1}{"y":2}]}"#, json!({"a":[{"x":1},{"y":2}]})),
        (r#"{"a":[,{"x":1}]}"#, json!({"a":[{"x":1}]})),
        (r#"{"a":1,}"#, json!({"a":1})),
        (r#"{"a":[1,2, ]}"#, json!({"a":[1,2]})),
        (r#"{"a":"}{""b":2}"#, json!({"a":"}{","b":2})),
        (
            r#"{"s":[{"a":"x\"}{"}{"b":1}]}"#,
            json!({"s":[{"a":"x\"}{"},{"b":1}]}),
        ),
        (r#"{"s":[{"q":1}]"t":[2]}"#, json!({"s":[{"q":1}],"t":[2]})),
    ];
    for (raw, want) in cases {
        assert_eq!(&decode_reply(raw.as_bytes()).expect(raw), want, "{raw}");
    }
    // Valid JSON is never touched, whatever its strings hold.
    let valid = br#"{"a":"[,{ }{ ,} \"\"","b":[]}"#;
    assert_eq!(repair_separators(valid), valid.to_vec());
}

#[test]
fn a_reply_cut_in_half_is_garbage_that_says_so() {
    let full = S9_SUMMARY_STATS.as_bytes();
    let reason = garbage_reason(decode_reply(&full[..full.len() / 2]));
    assert!(reason.contains("ends early"), "{reason}");
}

#[test]
fn text_and_html_replies_are_garbage() {
    let reason = garbage_reason(decode_reply(b"STATUS=S,When=1,Code=11,Msg=Summary|\0"));
    assert!(reason.contains("plain-text"), "{reason}");
    let reason = garbage_reason(decode_reply(b"<html></html>"));
    assert!(reason.contains("not a JSON object"), "{reason}");
    let reason = garbage_reason(decode_reply(b"\0"));
    assert!(reason.contains("empty"), "{reason}");
}

// ----- real sockets -----

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BYTES: usize = 1024 * 1024;

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    (l, addr)
}

#[tokio::test]
async fn a_miner_that_never_answers_times_out() {
    let (l, addr) = listener().await;
    let held = tokio::spawn(async move {
        let (stream, _) = l.accept().await.expect("accept");
        // Keep the connection open, silent, until the client gives up.
        let mut stream = stream;
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).await.ok();
    });
    let after = Duration::from_millis(300);
    match query(&any(), &addr, "summary", after, MAX_BYTES).await {
        Err(e @ DeviceError::Timeout { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}");
            assert!(e.is_unreachable());
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    held.await.expect("server task");
}

#[tokio::test]
async fn a_reply_over_the_limit_is_refused() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = l.accept().await.expect("accept");
        let mut request = [0u8; 64];
        let n = stream.read(&mut request).await.expect("the request");
        assert!(n > 0, "the client sends its request first");
        let flood = vec![b' '; 2 * 1024 * 1024];
        // The client hangs up part-way: a failed write is expected.
        stream.write_all(&flood).await.ok();
    });
    match query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES).await {
        Err(DeviceError::TooLarge { addr: a, limit }) => {
            assert_eq!(a, addr);
            assert_eq!(limit, MAX_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    server.await.expect("server task");
}

#[tokio::test]
async fn a_reply_cut_off_by_a_closed_connection_is_garbage() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = l.accept().await.expect("accept");
        let mut request = [0u8; 64];
        let n = stream.read(&mut request).await.expect("the request");
        assert!(n > 0, "the client sends its request first");
        let full = S9_SUMMARY_STATS.as_bytes();
        stream
            .write_all(&full[..full.len() / 2])
            .await
            .expect("write");
    });
    let reason = garbage_reason(query(&any(), &addr, "summary+stats", TIMEOUT, MAX_BYTES).await);
    assert!(reason.contains("ends early"), "{reason}");
    server.await.expect("server task");
}

#[tokio::test]
async fn the_reply_ends_at_the_nul_even_if_the_connection_stays_open() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = l.accept().await.expect("accept");
        let mut request = [0u8; 64];
        let n = stream.read(&mut request).await.expect("the request");
        assert!(n > 0, "the client sends its request first");
        stream
            .write_all(WHATSMINER_SUMMARY.as_bytes())
            .await
            .expect("write");
        stream.write_all(b"\0trailing").await.expect("write");
        // Stay open until the client has gone.
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).await.ok();
    });
    let reply = query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES)
        .await
        .expect("query");
    assert_eq!(parse_report(&reply).expect("parses").power_w, Some(3593.0));
    server.await.expect("server task");
}

#[test]
fn a_reply_to_a_change_is_judged_by_its_status() {
    let ok = json!({"STATUS":[{"STATUS":"S","Msg":"Paused"}]});
    assert_eq!(judge(&ok), Ok("Paused".into()));
    let refused = json!({"STATUS":[{"STATUS":"E","Code":14,"Msg":"Invalid command"}]});
    assert!(judge(&refused).unwrap_err().contains("Invalid command"));
    assert!(judge(&json!({})).is_err());
}
