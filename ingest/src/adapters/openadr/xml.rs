//! A small read-only XML tree for the VTN's replies: elements by local name (OpenADR's
//! element names are unique across its namespaces, so prefixes are dropped), their text, and
//! bounds on size and depth so a hostile VTN cannot exhaust memory or the stack. No DTD and
//! no entity other than XML's five and character references is accepted.

use quick_xml::Reader;
use quick_xml::events::Event;

use adit_devices::DeviceError;

/// The most elements one reply may hold.
const MAX_ELEMENTS: usize = 20_000;
/// The deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// One element: its local name, its own text (trimmed) and its children in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// The name without its namespace prefix.
    pub name: String,
    /// The text directly inside it, trimmed.
    pub text: String,
    /// Its child elements.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element named `name` anywhere below this one (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// The text of the element at `path` (child names, one level each), if it is there.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        let mut at = self;
        for name in path {
            at = at.child(name)?;
        }
        Some(at.text.as_str())
    }
}

/// Parses `body` into its root element.
pub fn parse(body: &[u8]) -> Result<Element, DeviceError> {
    let garbage = |why: String| DeviceError::garbage(format!("not OpenADR XML: {why}"), body);
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| garbage(format!("{e} at byte {}", reader.error_position())))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(garbage(format!(
                        "more than {MAX_ELEMENTS} elements or {MAX_DEPTH} levels"
                    )));
                }
                let name = start.local_name().as_ref().to_string();
                let element = Element {
                    name,
                    ..Element::default()
                };
                if empty {
                    close(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| garbage("an end tag without its start".into()))?;
                close(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                push_text(&mut stack, &text.xml10_content());
            }
            Event::CData(data) => {
                push_text(&mut stack, &data.xml10_content());
            }
            Event::GeneralRef(reference) => {
                let reference = format!("&{};", reference.xml10_content());
                let text = quick_xml::escape::unescape(&reference)
                    .map_err(|e| garbage(format!("unknown entity {reference}: {e}")))?;
                push_text(&mut stack, &text);
            }
            Event::DocType(_) => return Err(garbage("a DTD is not accepted".into())),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(garbage("it ends inside an element (cut off?)".into()));
    }
    root.ok_or_else(|| garbage("no element".into()))
}

fn push_text(stack: &mut [Element], text: &str) {
    if let Some(open) = stack.last_mut() {
        open.text.push_str(text);
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, mut element: Element) {
    let trimmed = element.text.trim();
    if trimmed.len() != element.text.len() {
        element.text = trimmed.to_string();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => {
            root.get_or_insert(element);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_by_local_name_with_their_text() {
        let doc = br#"<?xml version="1.0"?><oadr:a xmlns:oadr="x" xmlns:ei="y"><ei:b>one &amp; two</ei:b><c/><b>&#51;</b></oadr:a>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.text_at(&["b"]), Some("one & two"));
        assert_eq!(root.children_named("b").count(), 2);
        assert_eq!(root.children[2].text, "3");
        assert!(root.child("c").is_some());
        assert_eq!(root.find("c").map(|c| c.name.as_str()), Some("c"));
    }

    #[test]
    fn hostile_documents_are_refused_not_followed() {
        for doc in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            b"<a>&unknown;</a>",
        ] {
            assert!(parse(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        assert!(parse(wide.as_bytes()).is_err());
    }
}
