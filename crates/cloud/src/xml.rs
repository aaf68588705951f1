//! Just enough XML for AWS's Query and S3 responses: a tree of elements with their text.

use quick_xml::events::Event;

#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn parse(xml: &str) -> Result<Element, quick_xml::Error> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack = vec![Element::default()];
        loop {
            match reader.read_event()? {
                Event::Start(e) => stack.push(Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Default::default()
                }),
                Event::Empty(e) => {
                    let el = Element {
                        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                        ..Default::default()
                    };
                    stack.last_mut().expect("root").children.push(el);
                }
                Event::Text(t) => {
                    let text = t.decode().map_err(quick_xml::Error::from)?;
                    stack.last_mut().expect("root").text.push_str(&text);
                }
                Event::CData(t) => {
                    let text = String::from_utf8_lossy(&t.into_inner()).into_owned();
                    stack.last_mut().expect("root").text.push_str(&text);
                }
                Event::GeneralRef(r) => {
                    // Entity references arrive apart from the text around them.
                    let text = stack.last_mut().expect("root");
                    if let Some(c) = r.resolve_char_ref()? {
                        text.text.push(c);
                    } else {
                        let ch = match r.as_ref() {
                            b"amp" => "&",
                            b"lt" => "<",
                            b"gt" => ">",
                            b"quot" => "\"",
                            b"apos" => "'",
                            _ => "",
                        };
                        text.text.push_str(ch);
                    }
                }
                Event::End(_) => {
                    let mut done = stack.pop().expect("balanced");
                    // Trimmed only here: entity references split the text into pieces.
                    done.text = done.text.trim().to_string();
                    stack.last_mut().expect("root").children.push(done);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let mut doc = stack.into_iter().next().expect("root");
        Ok(if doc.children.len() == 1 {
            doc.children.remove(0)
        } else {
            doc
        })
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element with this name anywhere below (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// The text of the first element with this name anywhere below.
    pub fn find_text(&self, name: &str) -> Option<String> {
        self.find(name).map(|e| e.text.clone())
    }

    /// The text of a direct child.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|e| e.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ec2_error_and_a_tag_set() {
        let e = Element::parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>AuthFailure</Code><Message>a &amp; b</Message></Error></Errors><RequestID>x</RequestID></Response>"#,
        )
        .unwrap();
        assert_eq!(e.name, "Response");
        assert_eq!(e.find_text("Code").as_deref(), Some("AuthFailure"));
        assert_eq!(e.find_text("Message").as_deref(), Some("a & b"));
        let t = Element::parse(
            "<r xmlns=\"http://ec2\"><tagSet><item><key>Name</key><value>n</value></item><item><key>v</key><value/></item></tagSet></r>",
        )
        .unwrap();
        let tags: Vec<(&str, &str)> = t
            .find("tagSet")
            .unwrap()
            .children("item")
            .map(|i| {
                (
                    i.child_text("key").unwrap(),
                    i.child_text("value").unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(tags, [("Name", "n"), ("v", "")]);
    }
}
