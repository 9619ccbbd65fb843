//! JSON log lines built by appending text, never by parsing it again.
//!
//! tracing-subscriber's JSON formatter keeps a span's fields as a JSON object string, so every
//! line logged inside a span parses that string back into a map to print it, and every
//! `span.record(..)` parses and re-serialises it: on the request line, that was most of the
//! cost of logging. Here a span's fields are kept as JSON members (`"k":v,"k2":v2`), a
//! `record` appends to them, and a line splices them in as they are. The lines keep the shape
//! of tracing-subscriber's flattened JSON (`timestamp`, `level`, the event's fields with
//! `message`, `target`, `span` with the current span's fields and `name`), minus its
//! `spans` list: a request has one span.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Span fields as JSON members, appended to on `record`.
pub struct JsonFields;

/// One JSON object per event, on one line.
pub struct JsonLines;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Members::new(&mut writer, true);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut members = Members::new(&mut writer, first);
        fields.record(&mut members);
        members.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut members = Members::new(&mut writer, false);
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        let span = if event.is_root() {
            None
        } else {
            event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current())
        };
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() {
                if !fields.fields.is_empty() {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes each visited field as a JSON member, a comma before all but the first.
struct Members<'a, W: Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Members<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Members {
            out,
            first,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.out.write_char(',')?;
            }
            self.first = false;
            string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value}"));
        } else {
            self.member(field, |out| {
                write!(Escaped::quoted(out)?, "{value}")?;
                out.write_char('"')
            });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |out| {
            write!(Escaped::quoted(out)?, "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            write!(Escaped::quoted(out)?, "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `value` as a JSON string.
fn string<W: Write>(out: &mut W, value: &str) -> fmt::Result {
    Escaped::quoted(out)?.write_str(value)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a, W: Write>(&'a mut W);

impl<'a, W: Write> Escaped<'a, W> {
    /// Opens a JSON string; the caller closes it.
    fn quoted(out: &'a mut W) -> Result<Self, fmt::Error> {
        out.write_char('"')?;
        Ok(Escaped(out))
    }
}

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn lines_of(run: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(out.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(out.0.lock().expect("lines").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_carries_the_event_fields_and_the_span_fields_recorded_later() {
        let lines = lines_of(|| {
            let span = tracing::info_span!(
                "request",
                path = "/a\"b\\c\n\u{1}é",
                status = tracing::field::Empty
            );
            let _in = span.enter();
            tracing::warn!(
                count = 3_u64,
                ok = true,
                ratio = 0.5,
                delta = -2_i64,
                "hello {}",
                1
            );
            span.record("status", 401_u16);
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let event = &lines[0];
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["message"], "hello 1");
        assert_eq!(event["count"], 3);
        assert_eq!(event["ok"], true);
        assert_eq!(event["ratio"], 0.5);
        assert_eq!(event["delta"], -2);
        assert_eq!(event["target"], module_path!());
        assert_eq!(event["span"]["name"], "request");
        assert_eq!(event["span"]["path"], "/a\"b\\c\n\u{1}é");
        assert!(event["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        let close = &lines[1];
        assert_eq!(close["message"], "close");
        assert_eq!(close["span"]["status"], 401);
        assert_eq!(close["span"]["path"], "/a\"b\\c\n\u{1}é");
        assert!(close["time.busy"].is_string(), "{close}");
    }

    #[test]
    fn an_event_outside_any_span_has_no_span_member() {
        let lines = lines_of(|| {
            let err = std::io::Error::other("disk \"full\"");
            tracing::error!(error = &err as &dyn std::error::Error, "failed");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["error"], "disk \"full\"");
        assert!(lines[0].get("span").is_none(), "{}", lines[0]);
    }
}
