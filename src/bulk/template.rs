//! The campaign's templates in one minijinja environment, each compiled
//! once: a variable a row lacks is an error, never an empty string
//! (strict undefined); values are HTML-escaped in templates added as HTML
//! only; a template's final newline is kept. Knows nothing of flags or
//! messages: templates are named by the caller (its flag names).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use super::data::{Columns, Row};
use crate::exit::Failure;

/// Whether values are HTML-escaped in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    None,
    Html,
}

pub struct Templates {
    env: Environment<'static>,
    columns: Arc<Columns>,
    /// For each template, the variables it uses that are no column.
    unknown: HashMap<String, Vec<String>>,
    /// For each template, the variables it uses, sorted.
    variables: HashMap<String, Vec<String>>,
}

impl Templates {
    pub fn new(columns: &Arc<Columns>) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // The default delimiters always build.
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        // Escaping is decided per template by `add` (its name ends in
        // `\u{0}html` for HTML); no template name is a file name here.
        env.set_auto_escape_callback(|name| match name.ends_with(HTML_MARK) {
            true => AutoEscape::Html,
            false => AutoEscape::None,
        });
        Templates {
            env,
            columns: Arc::clone(columns),
            unknown: HashMap::new(),
            variables: HashMap::new(),
        }
    }

    /// Compiles `source` as template `name`. A syntax error is 65, naming
    /// the template and the line in it.
    pub fn add(&mut self, name: &str, source: &str, escape: Escape) -> Result<()> {
        let key = key(name, escape);
        self.env
            .add_template_owned(key.clone(), source.to_owned())
            .map_err(|e| {
                Failure::data(format!(
                    "{name}: template error: {}",
                    describe(&e, source.lines().count() > 1)
                ))
            })?;
        let template = self
            .env
            .get_template(&key)
            .map_err(|e| Failure::data(format!("{name}: template error: {e}")))?;
        let mut variables: Vec<String> = template.undeclared_variables(false).into_iter().collect();
        variables.sort();
        let unknown = variables
            .iter()
            .filter(|v| !self.columns.contains(v))
            .cloned()
            .collect();
        self.unknown.insert(name.to_owned(), unknown);
        self.variables.insert(name.to_owned(), variables);
        Ok(())
    }

    /// The variables template `name` uses (the columns it reads), sorted.
    pub fn variables(&self, name: &str) -> &[String] {
        self.variables.get(name).map_or(&[], Vec::as_slice)
    }

    /// Renders template `name` (added with `escape`) for `row`. The error
    /// names the variable that is no column, or says what failed and where.
    pub fn render(&self, name: &str, escape: Escape, row: &Context) -> Result<String, String> {
        let template = self
            .env
            .get_template(&key(name, escape))
            .map_err(|e| e.to_string())?;
        template.render(row.0.clone()).map_err(|e| {
            let unknown = self.unknown.get(name).map_or(&[][..], Vec::as_slice);
            match (e.kind(), unknown) {
                (ErrorKind::UndefinedError, [one]) => format!(
                    "{name}: variable '{one}' is not a column of the list (columns: {})",
                    self.columns.listed()
                ),
                (ErrorKind::UndefinedError, [_, ..]) => format!(
                    "{name}: variables {} are not columns of the list (columns: {})",
                    unknown
                        .iter()
                        .map(|v| format!("'{v}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.columns.listed()
                ),
                _ => format!("{name}: {}", describe(&e, true)),
            }
        })
    }
}

/// Escaping is a property of the name minijinja sees.
const HTML_MARK: &str = "\u{0}html";

fn key(name: &str, escape: Escape) -> String {
    match escape {
        Escape::None => name.to_owned(),
        Escape::Html => format!("{name}{HTML_MARK}"),
    }
}

/// What went wrong, without minijinja's template name (ours carries a
/// marker), with the line when the template has more than one.
fn describe(e: &minijinja::Error, with_line: bool) -> String {
    let what = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    match (e.line(), with_line) {
        (Some(line), true) => format!("{what} (template line {line})"),
        _ => what,
    }
}

/// One row as the templates see it: its columns as variables.
pub struct Context(Value);

impl Context {
    pub fn new(row: &Row) -> Context {
        Context(Value::from_object(RowObject(row.clone())))
    }
}

#[derive(Debug)]
struct RowObject(Row);

impl Object for RowObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().and_then(|k| self.0.get(k)).map(Value::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .columns()
                .names()
                .iter()
                .map(|n| Value::from(n.as_str()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Templates, Context) {
        let columns = Columns::of(&["email", "name", "empty"]);
        let row = Row::of(&columns, 1, &["a@example.com", "<Zoë & Co>", ""]);
        (Templates::new(&columns), Context::new(&row))
    }

    #[test]
    fn values_filters_conditions_and_the_final_newline() {
        let (mut t, row) = setup();
        t.add(
            "--body",
            "Hi {{ name | upper }}{% if empty %}!{% endif %}[{{ empty }}]\n",
            Escape::None,
        )
        .unwrap();
        assert_eq!(
            t.render("--body", Escape::None, &row).unwrap(),
            "Hi <ZOË & CO>[]\n"
        );
        assert_eq!(t.variables("--body"), ["empty", "name"]);
        t.add("--subject", "x\n\n", Escape::None).unwrap();
        assert_eq!(t.render("--subject", Escape::None, &row).unwrap(), "x\n\n");
    }

    #[test]
    fn html_only_is_escaped() {
        let (mut t, row) = setup();
        t.add(
            "--html",
            "<p>{{ name }}</p>{{ name | safe }}\n",
            Escape::Html,
        )
        .unwrap();
        t.add("--subject", "{{ name }}", Escape::None).unwrap();
        assert_eq!(
            t.render("--html", Escape::Html, &row).unwrap(),
            "<p>&lt;Zoë &amp; Co&gt;</p><Zoë & Co>\n"
        );
        assert_eq!(
            t.render("--subject", Escape::None, &row).unwrap(),
            "<Zoë & Co>"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        let (mut t, row) = setup();
        t.add("--subject", "Hello {{ nmae }}", Escape::None)
            .unwrap();
        let err = t.render("--subject", Escape::None, &row).unwrap_err();
        assert_eq!(
            err,
            "--subject: variable 'nmae' is not a column of the list (columns: email, name, empty)"
        );
        // Even in a condition or a loop: strict means strict.
        t.add("--body", "{% if nick %}x{% endif %}", Escape::None)
            .unwrap();
        assert!(
            t.render("--body", Escape::None, &row)
                .unwrap_err()
                .contains("'nick'")
        );
        // ...unless the template asks.
        t.add(
            "--to",
            "{% if nick is defined %}x{% endif %}{{ email }}",
            Escape::None,
        )
        .unwrap();
        assert_eq!(
            t.render("--to", Escape::None, &row).unwrap(),
            "a@example.com"
        );
    }

    #[test]
    fn syntax_errors_name_the_template() {
        let (mut t, _) = setup();
        let err = t
            .add("--subject", "Hello {{ name", Escape::None)
            .unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::DataErr);
        assert!(
            err.to_string()
                .starts_with("--subject: template error: syntax error"),
            "{err}"
        );
    }
}
