//! CHECK constraints and partition bounds, as the server deparses them, read into rules on
//! single columns. A constraint is understood when every part of its top-level `AND` is one
//! of the common forms: a column compared with a constant (`BETWEEN` deparses to two such),
//! `= ANY (ARRAY[…])` (`IN`), `length(col)` compared with a number, `col ~ 'regex'`, `col IS
//! NOT NULL`. Anything else (an `OR`, two columns compared, other functions) is not, and is
//! reported rather than guessed at.

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "=" => Op::Eq,
            "<>" | "!=" => Op::Ne,
            _ => return None,
        })
    }

    /// The operator with its sides swapped: `5 < x` is `x > 5`.
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            other => other,
        }
    }
}

/// What a constraint says of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Compared with a constant, given as its text (`now` for `now()` and its kin).
    Compare(Op, String),
    OneOf(Vec<String>),
    /// The length in characters compared with a number.
    Length(Op, i64),
    /// Matches a POSIX regular expression somewhere (`~`).
    Matches(String),
    NotNull,
}

/// The rules of CHECK definition `definition` (`CHECK ((age >= 18))`), each with its column
/// (`VALUE` in a domain's), or `None` when any part of it is not understood.
pub fn understand(definition: &str) -> Option<Vec<(String, Rule)>> {
    let inner = definition.trim().strip_prefix("CHECK")?.trim();
    let inner = inner.strip_suffix("NOT VALID").unwrap_or(inner).trim();
    let tokens = tokenize(inner)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.expr()?;
    if parser.at != parser.tokens.len() {
        return None;
    }
    let mut rules = Vec::new();
    conjuncts(&expr, &mut rules)?;
    Some(rules)
}

/// A partition bound (`FOR VALUES IN ('US', 'CA')`, `FOR VALUES FROM ('2024-01-01') TO
/// (MAXVALUE)`, `FOR VALUES WITH (…)`, `DEFAULT`).
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// Any value fits (a default or hash partition).
    Any,
    /// One of these values; `None` is NULL.
    In(Vec<Option<String>>),
    /// From (inclusive) to (exclusive) on a one-column key; `None` is MINVALUE or MAXVALUE.
    Range(Option<String>, Option<String>),
}

/// `bound` read, or `None` when it is not understood (a key of several columns).
pub fn partition_bound(bound: &str) -> Option<Bound> {
    let bound = bound.trim();
    if bound == "DEFAULT" || bound.starts_with("FOR VALUES WITH") {
        return Some(Bound::Any);
    }
    let tokens = tokenize(bound.strip_prefix("FOR VALUES")?)?;
    let mut parser = Parser { tokens, at: 0 };
    let word = parser.word()?;
    let list = |p: &mut Parser| -> Option<Vec<Option<String>>> {
        p.expect(&Token::Open)?;
        let mut values = Vec::new();
        loop {
            let e = p.expr()?;
            values.push(match strip_casts(&e) {
                Expr::Const(c) => Some(c.clone()),
                Expr::Null => None,
                Expr::Column(w) if w == "MINVALUE" || w == "MAXVALUE" => None,
                _ => return None,
            });
            if p.eat(&Token::Comma) {
                continue;
            }
            p.expect(&Token::Close)?;
            return Some(values);
        }
    };
    match word.as_str() {
        "IN" => Some(Bound::In(list(&mut parser)?)),
        "FROM" => {
            let from = list(&mut parser)?;
            if parser.word()? != "TO" {
                return None;
            }
            let to = list(&mut parser)?;
            match (&from[..], &to[..]) {
                ([from], [to]) => Some(Bound::Range(from.clone(), to.clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The one column of a `LIST (col)` or `RANGE (col)` partition key.
pub fn partition_column(key: &str) -> Option<String> {
    let tokens = tokenize(key)?;
    match &tokens[..] {
        [
            Token::Word(_),
            Token::Open,
            Token::Word(c) | Token::Quoted(c),
            Token::Close,
        ] => Some(c.clone()),
        _ => None,
    }
}

fn conjuncts(expr: &Expr, rules: &mut Vec<(String, Rule)>) -> Option<()> {
    match expr {
        Expr::And(parts) => {
            for p in parts {
                conjuncts(p, rules)?;
            }
            Some(())
        }
        Expr::IsNotNull(e) => {
            rules.push((column(e)?, Rule::NotNull));
            Some(())
        }
        Expr::Binary(op, left, right) => {
            let (l, r) = (strip_casts(left), strip_casts(right));
            if op == "~" {
                rules.push((column(l)?, Rule::Matches(constant(r)?)));
                return Some(());
            }
            let op = Op::parse(op)?;
            if let Expr::Call(f, args) = l
                && matches!(f.as_str(), "length" | "char_length" | "character_length")
                && let [arg] = &args[..]
            {
                let n = constant(r)?.parse().ok()?;
                rules.push((column(arg)?, Rule::Length(op, n)));
                return Some(());
            }
            if let (Some(c), Some(v)) = (column(l), constant(r)) {
                rules.push((c, Rule::Compare(op, v)));
            } else {
                rules.push((column(r)?, Rule::Compare(op.flipped(), constant(l)?)));
            }
            Some(())
        }
        Expr::Any(op, left, array) if op == "=" => {
            let Expr::Array(items) = strip_casts(array) else {
                return None;
            };
            let values: Option<Vec<String>> =
                items.iter().map(|i| constant(strip_casts(i))).collect();
            rules.push((column(left)?, Rule::OneOf(values?)));
            Some(())
        }
        _ => None,
    }
}

fn column(e: &Expr) -> Option<String> {
    match strip_casts(e) {
        Expr::Column(c) => Some(c.clone()),
        _ => None,
    }
}

fn constant(e: &Expr) -> Option<String> {
    match strip_casts(e) {
        Expr::Const(c) => Some(c.clone()),
        Expr::Negative(inner) => Some(format!("-{}", constant(inner)?)),
        Expr::Call(f, args)
            if args.is_empty()
                && matches!(
                    f.as_str(),
                    "now" | "statement_timestamp" | "transaction_timestamp" | "clock_timestamp"
                ) =>
        {
            Some("now".into())
        }
        Expr::Column(w) if matches!(w.as_str(), "CURRENT_DATE" | "CURRENT_TIMESTAMP") => {
            Some("now".into())
        }
        _ => None,
    }
}

fn strip_casts(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(inner) => strip_casts(inner),
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
    Cast,
    /// An identifier or keyword; a quoted identifier keeps its case, unquoted ones as written.
    Word(String),
    /// A quoted identifier.
    Quoted(String),
    Str(String),
    Number(String),
    Operator(String),
}

fn tokenize(s: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => (out.push(Token::Open), i += 1).1,
            ')' => (out.push(Token::Close), i += 1).1,
            '[' => (out.push(Token::OpenBracket), i += 1).1,
            ']' => (out.push(Token::CloseBracket), i += 1).1,
            ',' => (out.push(Token::Comma), i += 1).1,
            ':' if chars.get(i + 1) == Some(&':') => (out.push(Token::Cast), i += 2).1,
            '\'' | '"' => {
                let (text, end) = quoted(&chars, i, c)?;
                out.push(if c == '"' {
                    Token::Quoted(text)
                } else {
                    Token::Str(text)
                });
                i = end;
            }
            'E' if chars.get(i + 1) == Some(&'\'') => {
                let (text, end) = quoted(&chars, i + 1, '\'')?;
                out.push(Token::Str(text.replace("\\\\", "\\")));
                i = end;
            }
            _ if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Token::Number(chars[start..i].iter().collect()));
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ if "<>=!~*+-/%.".contains(c) => {
                let start = i;
                while i < chars.len() && "<>=!~*".contains(chars[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                out.push(Token::Operator(chars[start..i].iter().collect()));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The text of the literal quoted with `q` that starts at `start`, and where it ends.
fn quoted(chars: &[char], start: usize, q: char) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        let c = *chars.get(i)?;
        if c == q {
            if chars.get(i + 1) == Some(&q) {
                text.push(q);
                i += 2;
                continue;
            }
            return Some((text, i + 1));
        }
        text.push(c);
        i += 1;
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Column(String),
    Const(String),
    Null,
    Negative(Box<Expr>),
    Cast(Box<Expr>),
    Call(String, Vec<Expr>),
    Array(Vec<Expr>),
    Binary(String, Box<Expr>, Box<Expr>),
    Any(String, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or,
    IsNotNull(Box<Expr>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, t: &Token) -> bool {
        let found = self.peek() == Some(t);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, t: &Token) -> Option<()> {
        self.eat(t).then_some(())
    }

    fn word(&mut self) -> Option<String> {
        match self.peek()? {
            Token::Word(w) => {
                let w = w.clone();
                self.at += 1;
                Some(w)
            }
            _ => None,
        }
    }

    fn keyword(&mut self, k: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k));
        self.at += usize::from(found);
        found
    }

    fn expr(&mut self) -> Option<Expr> {
        let first = self.and()?;
        if self.keyword("OR") {
            self.expr()?;
            return Some(Expr::Or);
        }
        Some(first)
    }

    fn and(&mut self) -> Option<Expr> {
        let mut parts = vec![self.comparison()?];
        while self.keyword("AND") {
            parts.push(self.comparison()?);
        }
        Some(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Expr::And(parts)
        })
    }

    fn comparison(&mut self) -> Option<Expr> {
        let left = self.unary()?;
        if self.keyword("IS") {
            if !self.keyword("NOT") || !self.keyword("NULL") {
                return None;
            }
            return Some(Expr::IsNotNull(Box::new(left)));
        }
        let Some(Token::Operator(op)) = self.peek().cloned() else {
            return Some(left);
        };
        self.at += 1;
        if self.keyword("ANY") {
            self.expect(&Token::Open)?;
            let array = self.expr()?;
            self.expect(&Token::Close)?;
            return Some(Expr::Any(op, Box::new(left), Box::new(array)));
        }
        let right = self.unary()?;
        Some(Expr::Binary(op, Box::new(left), Box::new(right)))
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Token::Operator("-".into())) {
            self.at += 1;
            return Some(Expr::Negative(Box::new(self.unary()?)));
        }
        let mut e = self.primary()?;
        while self.eat(&Token::Cast) {
            self.type_name()?;
            e = Expr::Cast(Box::new(e));
        }
        Some(e)
    }

    /// Skips a type name: words (`timestamp with time zone`), a modifier, `[]`.
    fn type_name(&mut self) -> Option<()> {
        self.type_word()?;
        while self.type_word().is_some() {}
        if self.eat(&Token::Open) {
            while !self.eat(&Token::Close) {
                self.peek()?;
                self.at += 1;
            }
        }
        while self.eat(&Token::OpenBracket) {
            self.expect(&Token::CloseBracket)?;
        }
        Some(())
    }

    fn type_word(&mut self) -> Option<()> {
        match self.peek()? {
            Token::Word(w) if !matches!(w.to_ascii_uppercase().as_str(), "AND" | "OR" | "IS") => {}
            Token::Quoted(_) => {}
            _ => return None,
        }
        self.at += 1;
        // A schema-qualified type: `public.mood`.
        if matches!(self.peek(), Some(Token::Operator(o)) if o == ".") {
            self.at += 1;
        }
        Some(())
    }

    fn primary(&mut self) -> Option<Expr> {
        match self.peek()?.clone() {
            Token::Open => {
                self.at += 1;
                let e = self.expr()?;
                self.expect(&Token::Close)?;
                Some(e)
            }
            Token::Str(s) | Token::Number(s) => {
                self.at += 1;
                Some(Expr::Const(s))
            }
            Token::Quoted(q) => {
                self.at += 1;
                Some(Expr::Column(q))
            }
            Token::Word(w) => {
                self.at += 1;
                if w == "ARRAY" && self.eat(&Token::OpenBracket) {
                    let mut items = Vec::new();
                    if !self.eat(&Token::CloseBracket) {
                        loop {
                            items.push(self.expr()?);
                            if self.eat(&Token::CloseBracket) {
                                break;
                            }
                            self.expect(&Token::Comma)?;
                        }
                    }
                    return Some(Expr::Array(items));
                }
                if w.eq_ignore_ascii_case("NULL") {
                    return Some(Expr::Null);
                }
                if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") {
                    return Some(Expr::Const(w.to_ascii_lowercase()));
                }
                if self.eat(&Token::Open) {
                    let mut args = Vec::new();
                    if !self.eat(&Token::Close) {
                        loop {
                            args.push(self.expr()?);
                            if self.eat(&Token::Close) {
                                break;
                            }
                            self.expect(&Token::Comma)?;
                        }
                    }
                    return Some(Expr::Call(w, args));
                }
                Some(Expr::Column(w))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(def: &str) -> Vec<(String, Rule)> {
        understand(def).unwrap_or_else(|| panic!("not understood: {def}"))
    }

    #[test]
    fn the_common_forms_as_the_server_prints_them() {
        assert_eq!(
            rules("CHECK (((age >= 18) AND (age <= 130)))"),
            vec![
                ("age".into(), Rule::Compare(Op::Ge, "18".into())),
                ("age".into(), Rule::Compare(Op::Le, "130".into()))
            ]
        );
        assert_eq!(
            rules("CHECK ((role = ANY (ARRAY['user'::text, 'it''s'::text])))"),
            vec![(
                "role".into(),
                Rule::OneOf(vec!["user".into(), "it's".into()])
            )]
        );
        assert_eq!(
            rules(
                "CHECK (((kind)::text = ANY ((ARRAY['a'::character varying, 'b'::character varying])::text[])))"
            ),
            vec![("kind".into(), Rule::OneOf(vec!["a".into(), "b".into()]))]
        );
        assert_eq!(
            rules("CHECK ((length(username) >= 3))"),
            vec![("username".into(), Rule::Length(Op::Ge, 3))]
        );
        assert_eq!(
            rules("CHECK (((\"Slug\")::text ~ '^[a-z0-9-]+$'::text))"),
            vec![("Slug".into(), Rule::Matches("^[a-z0-9-]+$".into()))]
        );
        assert_eq!(
            rules("CHECK ((price > (0)::numeric))"),
            vec![("price".into(), Rule::Compare(Op::Gt, "0".into()))]
        );
        assert_eq!(
            rules("CHECK ((VALUE > '-5'::integer))"),
            vec![("VALUE".into(), Rule::Compare(Op::Gt, "-5".into()))]
        );
        assert_eq!(
            rules("CHECK ((name <> ''::text))"),
            vec![("name".into(), Rule::Compare(Op::Ne, String::new()))]
        );
        assert_eq!(
            rules("CHECK ((created_at <= now()))"),
            vec![("created_at".into(), Rule::Compare(Op::Le, "now".into()))]
        );
        assert_eq!(
            rules("CHECK (('2000-01-01'::date < born))"),
            vec![("born".into(), Rule::Compare(Op::Gt, "2000-01-01".into()))]
        );
    }

    #[test]
    fn other_forms_are_not_understood() {
        for def in [
            "CHECK (((a > 0) OR (b > 0)))",
            "CHECK ((ends_at > starts_at))",
            "CHECK ((lower(email) = email))",
            "CHECK ((a IS NULL))",
        ] {
            assert_eq!(understand(def), None, "{def}");
        }
    }

    #[test]
    fn partition_bounds() {
        assert_eq!(
            partition_bound("FOR VALUES IN ('US', 'CA')"),
            Some(Bound::In(vec![Some("US".into()), Some("CA".into())]))
        );
        assert_eq!(
            partition_bound("FOR VALUES IN (NULL)"),
            Some(Bound::In(vec![None]))
        );
        assert_eq!(
            partition_bound("FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"),
            Some(Bound::Range(
                Some("2024-01-01".into()),
                Some("2025-01-01".into())
            ))
        );
        assert_eq!(
            partition_bound("FOR VALUES FROM (MINVALUE) TO (100)"),
            Some(Bound::Range(None, Some("100".into())))
        );
        assert_eq!(
            partition_bound("FOR VALUES WITH (modulus 4, remainder 1)"),
            Some(Bound::Any)
        );
        assert_eq!(partition_bound("DEFAULT"), Some(Bound::Any));
        assert_eq!(partition_bound("FOR VALUES FROM (1, 2) TO (3, 4)"), None);
        assert_eq!(
            partition_column("RANGE (created_at)"),
            Some("created_at".into())
        );
        assert_eq!(partition_column("LIST (\"Region\")"), Some("Region".into()));
        assert_eq!(partition_column("RANGE (a, b)"), None);
    }
}
