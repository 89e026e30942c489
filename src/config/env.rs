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
        let mut pos = 0;
        while let Some(found) = code[pos..].find("${") {
            let start = pos + found;
            out.push_str(&code[pos..start]);
            let Some(len) = code[start + 2..].find('}') else {
                pos = start;
                break;
            };
            let end = start + 2 + len + 1;
            let expr = &code[start + 2..end - 1];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n.trim(), Some(d)),
                None => (expr.trim(), None),
            };
            // A variable that is a whole plain scalar (`key: ${VAR}`, `- ${VAR}`) is inserted as
            // a quoted string, so a value containing ` #`, `: ` or a newline stays one string.
            let before = code[..start].trim_end();
            let whole =
                (before.ends_with(':') || before.trim_start() == "-" || before.ends_with(" -"))
                    && code[end..].trim().is_empty();
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(value) if whole && !plain_safe(&value) => {
                    out.push_str(&serde_json::Value::String(value).to_string())
                }
                Some(value) => out.push_str(&value),
                None => unset.push(UnsetVar {
                    line: idx + 1,
                    field: key_of(line),
                    var: name.to_string(),
                }),
            }
            pos = end;
        }
        out.push_str(&code[pos..]);
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

/// Can `v` stand as a YAML plain scalar and mean exactly itself? (Numbers, booleans, URLs and
/// ordinary words can; anything with comment, mapping or flow syntax cannot.)
fn plain_safe(v: &str) -> bool {
    !v.is_empty()
        && v.trim() == v
        && !v.contains(": ")
        && !v.contains(" #")
        && !v.ends_with(':')
        && v.chars().all(|c| !c.is_control())
        && !v.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
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
        let out = substitute(
            "a: ${SET}\nb: ${NOPE:-dflt}\nc: x${SET}y\n- ${SET}\nn: ${NOPE:-4}\nq: ${NOPE:-&x}\n",
            env,
        )
        .unwrap();
        assert_eq!(
            out,
            "a: value\nb: dflt\nc: xvaluey\n- value\nn: 4\nq: \"&x\"\n"
        );
    }

    #[test]
    fn whole_values_cannot_inject_yaml() {
        let evil = |_: &str| Some("p4ss #word\nadmin: true".to_string());
        let out = substitute("secret: ${S}\n", evil).unwrap();
        let v: std::collections::BTreeMap<String, String> = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v["secret"], "p4ss #word\nadmin: true");
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
