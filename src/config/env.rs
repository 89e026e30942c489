//! `${VAR}` substitution in configuration text, before YAML parsing.
//!
//! Substitution works on text so that any scalar may use it, but it skips comments (the shipped
//! example documents `${VAR}` in comments) and reports an unset variable with the line and the
//! key it belongs to, so an operator sees `keygate.yaml:12: client_secret: KM_SECRET is not set`
//! rather than a parse error somewhere else. `${VAR:-default}` supplies a default.

/// An unset variable: where and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsetVar {
    /// 1-based line number.
    pub line: usize,
    /// The YAML key on that line, when there is one.
    pub field: String,
    /// The variable's name.
    pub var: String,
}

/// Replace every `${VAR}` and `${VAR:-default}` outside comments using `lookup`. An unset
/// variable becomes an empty string in the output (so validation can go on and report the rest)
/// and is listed in the second part of the result.
pub fn substitute_all(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<UnsetVar>) {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n.trim(), Some(d)),
                None => (expr.trim(), None),
            };
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(value) => out.push_str(&value),
                None => unset.push(UnsetVar {
                    line: idx + 1,
                    field: key_of(line),
                    var: name.to_string(),
                }),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    (out, unset)
}

/// [`substitute_all`], failing on any unset variable.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<UnsetVar>> {
    match substitute_all(text, lookup) {
        (out, unset) if unset.is_empty() => Ok(out),
        (_, unset) => Err(unset),
    }
}

/// Byte offset of a `#` comment: at the line start or after whitespace, outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let (mut single, mut double) = (false, false);
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_ws => return Some(i),
            _ => {}
        }
        prev_ws = c.is_whitespace();
    }
    None
}

fn key_of(line: &str) -> String {
    let trimmed = line.trim_start().trim_start_matches("- ");
    match trimmed.split_once(':') {
        Some((k, _)) if !k.contains("${") => k.trim().to_string(),
        _ => "(value)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn replaces_known_and_defaults() {
        let out = substitute("a: ${SET}\nb: ${NOPE:-dflt}\n", env).unwrap();
        assert_eq!(out, "a: value\nb: dflt\n");
    }

    #[test]
    fn reports_every_unset_with_line_and_field() {
        let err = substitute("a: 1\n  client_secret: ${X}\nb: ${Y}\n", env).unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!(
            (err[0].line, err[0].field.as_str(), err[0].var.as_str()),
            (2, "client_secret", "X")
        );
        assert_eq!(err[1].var, "Y");
    }

    #[test]
    fn comments_are_left_alone() {
        let out = substitute("# uses ${NOPE}\na: 1 # ${NOPE}\nb: \"#${SET}\"\n", env).unwrap();
        assert_eq!(out, "# uses ${NOPE}\na: 1 # ${NOPE}\nb: \"#value\"\n");
    }
}
