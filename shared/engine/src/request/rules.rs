//! Every rule a request must follow, in one place: each field's JSON kind, its bounds, its
//! default, and the words a client reads when it breaks one.
//!
//! The validator checks by these rules and takes its defaults from them; the OpenAPI schema
//! (`schema`), the rules document the web page checks its form by (`document`) and the table
//! of rules in docs/model.md are generated from them. A rule changed here changes everywhere.

use serde_json::{Value, json};

use super::checked::{Allocation, Assumptions, ReturnModel, Withdrawal};
use super::input::{Choice, Rebalancing, ReturnModelKind, WithdrawalStrategy};
use crate::history;

/// The largest `n_scenarios` the model allows; a deployment may set a lower cap.
pub const MAX_SCENARIOS: u32 = 1_000_000;
pub(crate) const DEFAULT_SCENARIOS: u32 = 10_000;
pub(crate) const MAX_YEARS: u32 = 100;
/// Seeds are stored in a signed 64-bit column, so they stay below 2^63.
pub(crate) const MAX_SEED: u64 = i64::MAX as u64;
/// Items of each of `income`, `expenses` and `inflows`.
pub(crate) const MAX_CASH_FLOWS: usize = 50;
/// Characters of a name (`income[].name`, ...): enough for any label a person gives a cash
/// flow, and small enough that the name echoed on every poll never outweighs the result.
pub(crate) const MAX_NAME_CHARS: usize = 100;
/// How far the allocation's weights may sum from 1.
pub(crate) const SUM_TOLERANCE: f64 = 1e-6;
/// How far a correlation's diagonal may be from 1, and the matrix from symmetric.
pub(crate) const MATRIX_TOLERANCE: f64 = 1e-9;

pub(crate) const DEFAULT_ALLOCATION: Allocation = Allocation { stocks: 0.6, bonds: 0.4, cash: 0.0 };
pub(crate) const DEFAULT_RETURN_MODEL: ReturnModel = ReturnModel::Lognormal;
pub(crate) const DEFAULT_WITHDRAWAL: Withdrawal = Withdrawal::ConstantReal;
pub(crate) const DEFAULT_REBALANCING: Rebalancing = Rebalancing::Monthly;

/// The message for a field that must be given and was not.
pub(crate) const REQUIRED: &str = "is required";

// ---------------------------------------------------------------------------------------------
// The kinds of rule.
// ---------------------------------------------------------------------------------------------

/// A JSON number within bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumberRule {
    /// JSON path; `[]` stands for a list item's index.
    pub(crate) path: &'static str,
    pub(crate) min: f64,
    /// `> min` rather than `≥ min`.
    pub(crate) min_open: bool,
    pub(crate) max: f64,
    /// `< max` rather than `≤ max` (said in a message of its own).
    pub(crate) max_open: bool,
    pub(crate) default: NumberDefault,
    /// Words that replace the derived message.
    pub(crate) message: Option<&'static str>,
    pub(crate) only_for: OnlyFor,
}

/// What an absent number becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NumberDefault {
    /// Nothing: the field is required.
    Required,
    Value(f64),
    /// A moment of the embedded table (`Assumptions::historical`).
    Historical(fn(&Assumptions) -> f64),
}

/// A JSON integer (a whole number ≥ 0) within bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntegerRule {
    pub(crate) path: &'static str,
    pub(crate) min: u64,
    pub(crate) max: Limit,
    pub(crate) default: IntegerDefault,
    /// Replaces the derived message; `{min}` and `{max}` are filled in.
    pub(crate) message: Option<&'static str>,
    pub(crate) only_for: OnlyFor,
}

/// An integer's upper bound: a figure, or one set by the deployment or by the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Fixed(u64),
    /// The number of years in the embedded table.
    TableYears,
    /// The deployment's cap on `n_scenarios` (`RequestLimits::max_scenarios`).
    Scenarios,
    /// The request's own horizon, `years` (or [`MAX_YEARS`] while `years` is invalid).
    Horizon,
}

/// What an absent integer becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IntegerDefault {
    Required,
    Value(u32),
    /// [`DEFAULT_SCENARIOS`], or the deployment's cap when that is lower.
    Scenarios,
    /// The request's horizon, `years`.
    Horizon,
    /// Nothing is filled in; the words say what absence means.
    Absent(&'static str),
}

/// Which kinds or strategies take a parameter; any other refuses it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnlyFor {
    Any,
    Kinds(&'static [ReturnModelKind]),
    Strategies(&'static [WithdrawalStrategy]),
}

impl OnlyFor {
    /// The JSON names of the choices that take the parameter (empty for [`OnlyFor::Any`]).
    pub(crate) fn names(&self) -> Vec<&'static str> {
        match self {
            Self::Any => Vec::new(),
            Self::Kinds(kinds) => kinds.iter().map(|k| k.name()).collect(),
            Self::Strategies(strategies) => strategies.iter().map(|s| s.name()).collect(),
        }
    }
}

/// At most so many items.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListRule {
    pub(crate) path: &'static str,
    pub(crate) max_items: usize,
    pub(crate) message: &'static str,
}

/// A free text: at most so many characters (Unicode scalar values, as JavaScript's
/// `[...text].length` counts them), none of them a control character (Unicode category Cc:
/// U+0000–U+001F and U+007F–U+009F). Postgres refuses NUL in `jsonb`, and the others have no
/// business in a label that logs, CSV exports and the page echo.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextRule {
    pub(crate) path: &'static str,
    pub(crate) max_chars: usize,
}

/// What a text with a control character is told.
pub(crate) const CONTROL_CHARACTERS: &str =
    "must not contain control characters (U+0000–U+001F, U+007F–U+009F; NUL included)";
/// The same rule as a JSON Schema (ECMA-262) pattern: no character of category Cc.
pub(crate) const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

impl TextRule {
    const fn new(path: &'static str) -> Self {
        Self { path, max_chars: MAX_NAME_CHARS }
    }

    /// The text when it keeps the rule, else the message saying why not.
    pub(crate) fn check<'t>(&self, text: &'t str) -> Result<&'t str, String> {
        if text.chars().count() > self.max_chars {
            Err(self.message())
        } else if text.chars().any(char::is_control) {
            Err(CONTROL_CHARACTERS.to_owned())
        } else {
            Ok(text)
        }
    }

    /// What a text over the length is told.
    pub(crate) fn message(&self) -> String {
        format!("must be at most {} characters", self.max_chars)
    }
}

/// A rule between fields. Its message is a template: `{name}`s are filled in when it is
/// broken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CrossRule {
    /// A stable name for the rules document.
    pub(crate) id: &'static str,
    /// The JSON path the error names (`[]`: a list item's index; `[i][j]`: a matrix cell).
    pub(crate) field: &'static str,
    /// The rule in words, for the documentation.
    pub(crate) rule: &'static str,
    pub(crate) message: &'static str,
}

impl CrossRule {
    /// The message with each `{name}` replaced by its value.
    pub(crate) fn message_with(&self, values: &[(&str, &dyn std::fmt::Display)]) -> String {
        fill(self.message, values)
    }
}

/// `template` with each `{name}` replaced by its value.
pub(crate) fn fill(template: &str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
    values.iter().fold(template.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), &value.to_string())
    })
}

/// `path` with its list index filled in: `income[].end_year` → `income[2].end_year`.
pub(crate) fn item_path(path: &str, index: usize) -> String {
    path.replacen("[]", &format!("[{index}]"), 1)
}

/// The last segment of a path: the name of a field within its object.
pub(crate) fn name_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

impl NumberRule {
    const fn new(path: &'static str, min: f64, min_open: bool, max: f64) -> Self {
        Self {
            path,
            min,
            min_open,
            max,
            max_open: false,
            default: NumberDefault::Required,
            message: None,
            only_for: OnlyFor::Any,
        }
    }

    const fn with_default(self, default: NumberDefault) -> Self {
        Self { default, ..self }
    }

    const fn value(self, default: f64) -> Self {
        self.with_default(NumberDefault::Value(default))
    }

    const fn only_for(self, only_for: OnlyFor) -> Self {
        Self { only_for, ..self }
    }

    /// The number itself when it keeps the rule, else the message saying why not.
    pub(crate) fn check(&self, x: f64) -> Result<f64, String> {
        let above = if self.min_open { x > self.min } else { x >= self.min };
        if !(x.is_finite() && above && x <= self.max) {
            Err(self.message())
        } else if self.max_open && x >= self.max {
            Err(self.message_at_max())
        } else {
            Ok(x)
        }
    }

    /// What a number outside the bounds is told.
    pub(crate) fn message(&self) -> String {
        match self.message {
            Some(message) => message.to_owned(),
            None => {
                let lower = if self.min_open { ">" } else { "≥" };
                // An open bound says so here too: "≤ 1" would invite the very value refused.
                let upper = if self.max_open { "<" } else { "≤" };
                format!("must be a finite number {lower} {} and {upper} {}", self.min, self.max)
            }
        }
    }

    /// What a number at an open upper bound is told.
    pub(crate) fn message_at_max(&self) -> String {
        format!("must be strictly between {} and {}", self.min, self.max)
    }
}

impl IntegerRule {
    const fn new(path: &'static str, min: u64, max: Limit) -> Self {
        Self {
            path,
            min,
            max,
            default: IntegerDefault::Required,
            message: None,
            only_for: OnlyFor::Any,
        }
    }

    const fn with_default(self, default: IntegerDefault) -> Self {
        Self { default, ..self }
    }

    /// The message for an integer outside `min..=max`, with `max` as given (a figure, or a
    /// placeholder such as `{max}` for a bound the reader fills in).
    pub(crate) fn message_with_max(&self, max: &dyn std::fmt::Display) -> String {
        let template = self.message.unwrap_or("must be an integer from {min} to {max}");
        fill(template, &[("min", &self.min), ("max", max)])
    }
}

const fn number(path: &'static str, min: f64, max: f64) -> NumberRule {
    NumberRule::new(path, min, false, max)
}

const fn number_above(path: &'static str, min: f64, max: f64) -> NumberRule {
    NumberRule::new(path, min, true, max)
}

// ---------------------------------------------------------------------------------------------
// The rules, in the order of the request.
// ---------------------------------------------------------------------------------------------

pub(crate) const STARTING_PORTFOLIO: NumberRule = number_above("starting_portfolio", 0.0, 1e12);
pub(crate) const MONTHLY_SPENDING: NumberRule = number("monthly_spending", 0.0, 1e10);
pub(crate) const YEARS: IntegerRule = IntegerRule::new("years", 1, Limit::Fixed(MAX_YEARS as u64));
pub(crate) const N_SCENARIOS: IntegerRule =
    IntegerRule::new("n_scenarios", 1, Limit::Scenarios).with_default(IntegerDefault::Scenarios);
pub(crate) const SEED: IntegerRule = IntegerRule {
    message: Some("must be an integer from 0 to 2^63-1 ({max})"),
    ..IntegerRule::new("seed", 0, Limit::Fixed(MAX_SEED))
        .with_default(IntegerDefault::Absent("drawn at submit and returned with the result"))
};

/// The weights of stocks, bonds and cash, in the engine's order; a weight left out of a given
/// `allocation` is 0.
pub(crate) const ALLOCATION: [NumberRule; 3] = [
    number("allocation.stocks", 0.0, 1.0).value(0.0),
    number("allocation.bonds", 0.0, 1.0).value(0.0),
    number("allocation.cash", 0.0, 1.0).value(0.0),
];

const fn historical(f: fn(&Assumptions) -> f64) -> NumberDefault {
    NumberDefault::Historical(f)
}

pub(crate) const MEAN_RETURN: [NumberRule; 3] = [
    number("assumptions.stocks.mean_return", -0.5, 1.0)
        .with_default(historical(|a| a.stocks.mean_return)),
    number("assumptions.bonds.mean_return", -0.5, 1.0)
        .with_default(historical(|a| a.bonds.mean_return)),
    number("assumptions.cash.mean_return", -0.5, 1.0)
        .with_default(historical(|a| a.cash.mean_return)),
];
pub(crate) const VOLATILITY: [NumberRule; 3] = [
    number("assumptions.stocks.volatility", 0.0, 1.0)
        .with_default(historical(|a| a.stocks.volatility)),
    number("assumptions.bonds.volatility", 0.0, 1.0)
        .with_default(historical(|a| a.bonds.volatility)),
    number("assumptions.cash.volatility", 0.0, 1.0).with_default(historical(|a| a.cash.volatility)),
];
/// Each cell of `assumptions.correlation`.
pub(crate) const CORRELATION_CELL: NumberRule = NumberRule {
    message: Some("must be a number from -1 to 1"),
    ..number("assumptions.correlation[][]", -1.0, 1.0)
};
pub(crate) const INFLATION_MEAN: NumberRule =
    number("assumptions.inflation.mean", -0.1, 0.5).with_default(historical(|a| a.inflation.mean));
pub(crate) const INFLATION_VOLATILITY: NumberRule =
    number("assumptions.inflation.volatility", 0.0, 0.2)
        .with_default(historical(|a| a.inflation.volatility));

pub(crate) const ANNUAL_FEE: NumberRule = number("annual_fee", 0.0, 0.1).value(0.0);

pub(crate) const DF: NumberRule = NumberRule {
    message: Some("must be a finite number > 2 and ≤ 1e6"),
    ..number_above("return_model.df", 2.0, 1e6)
        .value(5.0)
        .only_for(OnlyFor::Kinds(&[ReturnModelKind::StudentT]))
};
pub(crate) const BLOCK_YEARS: IntegerRule = IntegerRule {
    only_for: OnlyFor::Kinds(&[ReturnModelKind::Bootstrap]),
    ..IntegerRule::new("return_model.block_years", 1, Limit::TableYears)
        .with_default(IntegerDefault::Value(1))
};

const PERCENT_STRATEGIES: OnlyFor = OnlyFor::Strategies(&[
    WithdrawalStrategy::PercentOfPortfolio,
    WithdrawalStrategy::FloorCeiling,
]);
const GUARDRAILS: OnlyFor = OnlyFor::Strategies(&[WithdrawalStrategy::Guardrails]);
const FLOOR_CEILING: OnlyFor = OnlyFor::Strategies(&[WithdrawalStrategy::FloorCeiling]);

pub(crate) const RATE: NumberRule =
    number_above("withdrawal.rate", 0.0, 1.0).value(0.04).only_for(PERCENT_STRATEGIES);
pub(crate) const UPPER_GUARDRAIL: NumberRule =
    number_above("withdrawal.upper_guardrail", 0.0, 10.0).value(0.2).only_for(GUARDRAILS);
pub(crate) const LOWER_GUARDRAIL: NumberRule =
    number_above("withdrawal.lower_guardrail", 0.0, 0.99).value(0.2).only_for(GUARDRAILS);
pub(crate) const CUT: NumberRule =
    number("withdrawal.cut", 0.0, 0.99).value(0.1).only_for(GUARDRAILS);
pub(crate) const RAISE: NumberRule =
    number("withdrawal.raise", 0.0, 10.0).value(0.1).only_for(GUARDRAILS);
pub(crate) const MONTHLY_FLOOR: NumberRule =
    number("withdrawal.monthly_floor", 0.0, 1e10).value(0.0).only_for(FLOOR_CEILING);
pub(crate) const MONTHLY_CEILING: NumberRule =
    number("withdrawal.monthly_ceiling", 0.0, 1e10).value(1e10).only_for(FLOOR_CEILING);

/// The parameters of `return_model` and of `withdrawal`, each with the choices that take it,
/// in the order a message lists them.
pub(crate) const RETURN_MODEL_PARAMETERS: [(&str, OnlyFor); 2] =
    [(DF.path, DF.only_for), (BLOCK_YEARS.path, BLOCK_YEARS.only_for)];
pub(crate) const WITHDRAWAL_PARAMETERS: [(&str, OnlyFor); 7] = [
    (RATE.path, RATE.only_for),
    (UPPER_GUARDRAIL.path, UPPER_GUARDRAIL.only_for),
    (LOWER_GUARDRAIL.path, LOWER_GUARDRAIL.only_for),
    (CUT.path, CUT.only_for),
    (RAISE.path, RAISE.only_for),
    (MONTHLY_FLOOR.path, MONTHLY_FLOOR.only_for),
    (MONTHLY_CEILING.path, MONTHLY_CEILING.only_for),
];

pub(crate) const INCOME: ListRule =
    ListRule { path: "income", max_items: MAX_CASH_FLOWS, message: "at most {max} streams" };
pub(crate) const INCOME_NAME: TextRule = TextRule::new("income[].name");
pub(crate) const INCOME_AMOUNT: NumberRule = number("income[].monthly_amount", 0.0, 1e10);
pub(crate) const INCOME_START: IntegerRule =
    IntegerRule::new("income[].start_year", 1, Limit::Horizon)
        .with_default(IntegerDefault::Value(1));
pub(crate) const INCOME_END: IntegerRule =
    IntegerRule::new("income[].end_year", 1, Limit::Horizon).with_default(IntegerDefault::Horizon);

/// The rules of a list of one-off amounts (`expenses` or `inflows`) and of its items.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneOffRules {
    pub(crate) list: ListRule,
    pub(crate) name: TextRule,
    pub(crate) year: IntegerRule,
    pub(crate) amount: NumberRule,
}

const fn one_offs(
    list: &'static str,
    name: &'static str,
    year: &'static str,
    amount: &'static str,
) -> OneOffRules {
    OneOffRules {
        list: ListRule { path: list, max_items: MAX_CASH_FLOWS, message: "at most {max} items" },
        name: TextRule::new(name),
        year: IntegerRule::new(year, 1, Limit::Horizon),
        amount: number(amount, 0.0, 1e12),
    }
}

pub(crate) const EXPENSES: OneOffRules =
    one_offs("expenses", "expenses[].name", "expenses[].year", "expenses[].amount");
pub(crate) const INFLOWS: OneOffRules =
    one_offs("inflows", "inflows[].name", "inflows[].year", "inflows[].amount");

pub(crate) const TARGET_SUCCESS: NumberRule =
    NumberRule { max_open: true, ..number_above("solve.target_success", 0.0, 1.0) };

impl ListRule {
    pub(crate) fn message(&self) -> String {
        fill(self.message, &[("max", &self.max_items)])
    }
}

// The rules between fields.

pub(crate) const ALLOCATION_SUM: CrossRule = CrossRule {
    id: "allocation_sum",
    field: "allocation",
    rule: "the weights sum to 1 ± 1e-6",
    message: "weights must sum to 1 (± 1e-6); they sum to {sum}",
};
pub(crate) const CORRELATION_SHAPE: CrossRule = CrossRule {
    id: "correlation_shape",
    field: "assumptions.correlation",
    rule: "3×3, rows and columns in the order stocks, bonds, cash",
    message: "must be a 3×3 matrix (rows and columns: stocks, bonds, cash)",
};
pub(crate) const CORRELATION_DIAGONAL: CrossRule = CrossRule {
    id: "correlation_diagonal",
    field: "assumptions.correlation[i][i]",
    rule: "unit diagonal (± 1e-9)",
    message: "the diagonal must be 1",
};
pub(crate) const CORRELATION_SYMMETRIC: CrossRule = CrossRule {
    id: "correlation_symmetric",
    field: "assumptions.correlation[i][j]",
    rule: "symmetric (± 1e-9)",
    message: "the matrix must be symmetric: [{i}][{j}] ≠ [{j}][{i}]",
};
pub(crate) const CORRELATION_PSD: CrossRule = CrossRule {
    id: "correlation_psd",
    field: "assumptions.correlation",
    rule: "positive semi-definite",
    message: "must be positive semi-definite (a valid correlation matrix)",
};
pub(crate) const HISTORICAL_YEARS: CrossRule = CrossRule {
    id: "historical_years",
    field: "years",
    rule: "at most the number of years in the embedded table with `return_model.kind` \
           `historical`",
    message: "must be at most {table_years} for the historical model (the table covers \
              {table_years} years)",
};
pub(crate) const NOT_A_PARAMETER: CrossRule = CrossRule {
    id: "not_a_parameter",
    field: "return_model.*, withdrawal.*",
    rule: "a parameter is given only with a kind or strategy that takes it",
    message: "is not a parameter of {tag} `{chosen}` (its parameters: {takes})",
};
pub(crate) const CEILING_ABOVE_FLOOR: CrossRule = CrossRule {
    id: "ceiling_above_floor",
    field: "withdrawal.monthly_ceiling",
    rule: "at least `withdrawal.monthly_floor`",
    message: "must be ≥ withdrawal.monthly_floor",
};
pub(crate) const END_AFTER_START: CrossRule = CrossRule {
    id: "end_after_start",
    field: "income[].end_year",
    rule: "at least `start_year`",
    message: "must be ≥ start_year",
};
pub(crate) const SOLVE_CONSTANT_REAL: CrossRule = CrossRule {
    id: "solve_constant_real",
    field: "solve",
    rule: "only with `withdrawal.strategy` `constant_real`",
    message: "the solver finds a constant real monthly_spending; use withdrawal.strategy \
              constant_real with it",
};

pub(crate) const CROSS_RULES: [&CrossRule; 10] = [
    &ALLOCATION_SUM,
    &CORRELATION_SHAPE,
    &CORRELATION_DIAGONAL,
    &CORRELATION_SYMMETRIC,
    &CORRELATION_PSD,
    &HISTORICAL_YEARS,
    &NOT_A_PARAMETER,
    &CEILING_ABOVE_FLOOR,
    &END_AFTER_START,
    &SOLVE_CONSTANT_REAL,
];

// ---------------------------------------------------------------------------------------------
// The table: every field of the request, in order, with its rule and what it means.
// ---------------------------------------------------------------------------------------------

/// One field of the request.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// JSON path: `a.b` for a member, `a[]` for the items of list `a`.
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    /// What the field is.
    pub(crate) about: &'static str,
    /// Why its default is what it is.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "read only by `markdown`, which writes docs/model.md's table in tests"
        )
    )]
    pub(crate) source: &'static str,
}

/// What JSON a field takes.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Number(NumberRule),
    Integer(IntegerRule),
    /// One of a closed set of names; `default: None` makes it required.
    Choice {
        names: Vec<&'static str>,
        default: Option<&'static str>,
    },
    Flag {
        default: bool,
    },
    Text(TextRule),
    List(ListRule),
    /// An object that may be left out; `default` is what it then is, if anything. `tag` names
    /// the member whose choice decides which other members it takes.
    Object {
        default: Option<Value>,
        tag: Option<&'static str>,
    },
    /// The correlation matrix: 3×3, each cell by `cell`.
    Matrix {
        cell: NumberRule,
        default: Value,
    },
}

impl Field {
    fn new(path: &'static str, kind: Kind, about: &'static str) -> Self {
        Self { path, kind, about, source: "" }
    }

    fn number(rule: NumberRule, about: &'static str) -> Self {
        Self::new(rule.path, Kind::Number(rule), about)
    }

    fn integer(rule: IntegerRule, about: &'static str) -> Self {
        Self::new(rule.path, Kind::Integer(rule), about)
    }

    fn object(path: &'static str, default: Option<Value>, about: &'static str) -> Self {
        Self::new(path, Kind::Object { default, tag: None }, about)
    }

    fn choice<T: Choice>(path: &'static str, default: Option<T>, about: &'static str) -> Self {
        let names = T::CHOICES.iter().map(|(name, _)| *name).collect();
        Self::new(path, Kind::Choice { names, default: default.map(|d| d.name()) }, about)
    }

    fn source(self, source: &'static str) -> Self {
        Self { source, ..self }
    }

    /// Whether leaving the field out is an error.
    pub(crate) fn required(&self) -> bool {
        match &self.kind {
            Kind::Number(rule) => matches!(rule.default, NumberDefault::Required),
            Kind::Integer(rule) => matches!(rule.default, IntegerDefault::Required),
            Kind::Choice { default, .. } => default.is_none(),
            _ => false,
        }
    }

    /// The kinds or strategies that take this field.
    pub(crate) fn only_for(&self) -> OnlyFor {
        match &self.kind {
            Kind::Number(rule) => rule.only_for,
            Kind::Integer(rule) => rule.only_for,
            _ => OnlyFor::Any,
        }
    }

    /// The rules between fields whose error names this field.
    pub(crate) fn cross_rules(&self) -> Vec<&'static CrossRule> {
        let bare = |p: &str| p.replace("[i][i]", "").replace("[i][j]", "");
        CROSS_RULES.iter().copied().filter(|r| bare(r.field) == self.path).collect()
    }
}

fn to_value(x: impl serde::Serialize) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

/// Every field of the request, in the order of docs/model.md.
pub(crate) fn fields() -> Vec<Field> {
    let historical = Assumptions::historical();
    let assets = historical.assets();
    let from_table = "embedded table";
    let guyton_klinger = "Guyton & Klinger (2006)";
    let mut f = vec![
        Field::number(STARTING_PORTFOLIO, "Portfolio value at the start, in today's money."),
        Field::number(
            MONTHLY_SPENDING,
            "Spending per month in today's money: raised with inflation (`constant_real`), or \
             the initial spending from which `guardrails` derives its initial withdrawal rate.",
        ),
        Field::integer(YEARS, "Horizon in years."),
        Field::integer(
            N_SCENARIOS,
            "Number of simulated scenarios; ignored by `historical`, which runs every window.",
        )
        .source(
            "project choice (standard error of the success probability at most 0.5 \
             percentage points)",
        ),
        Field::integer(SEED, "Random seed: the same request and seed give the same result."),
        Field::object(
            "allocation",
            Some(to_value(DEFAULT_ALLOCATION)),
            "Target weights of stocks, bonds and cash.",
        )
        .source("project choice (the conventional balanced portfolio)"),
    ];
    for rule in ALLOCATION {
        f.push(Field::number(rule, "Target weight.").source("a weight left out is 0"));
    }
    f.push(
        Field::object(
            "assumptions",
            Some(to_value(historical)),
            "Capital-market assumptions of the parametric return models; anything left out \
             takes the embedded 1928–2024 table's figure.",
        )
        .source(from_table),
    );
    let asset_paths = ["assumptions.stocks", "assumptions.bonds", "assumptions.cash"];
    for (i, path) in asset_paths.into_iter().enumerate() {
        f.extend([
            Field::object(path, Some(to_value(assets[i])), "").source(from_table),
            Field::number(MEAN_RETURN[i], "Annual arithmetic mean return.").source(from_table),
            Field::number(VOLATILITY[i], "Annual standard deviation of the return.")
                .source(from_table),
        ]);
    }
    f.extend([
        Field::new(
            "assumptions.correlation",
            Kind::Matrix { cell: CORRELATION_CELL, default: to_value(historical.correlation) },
            "Correlation of the returns of stocks, bonds and cash.",
        )
        .source(from_table),
        Field::object("assumptions.inflation", Some(to_value(historical.inflation)), "")
            .source(from_table),
        Field::number(INFLATION_MEAN, "Annual mean inflation.").source(from_table),
        Field::number(INFLATION_VOLATILITY, "Annual standard deviation of inflation.")
            .source(from_table),
        Field::number(ANNUAL_FEE, "Annual fee as a fraction of the portfolio, charged monthly."),
        Field::new(
            "return_model",
            Kind::Object { default: Some(to_value(DEFAULT_RETURN_MODEL)), tag: Some("kind") },
            "How monthly returns are generated: `kind` and that kind's parameters.",
        )
        .source("project choice"),
        Field::choice::<ReturnModelKind>(
            "return_model.kind",
            None,
            "The return model (docs/model.md §3).",
        ),
        Field::number(DF, "Degrees of freedom of the Student-t shocks; fatter tails nearer 2.")
            .source("project choice (a common heavy-tail setting for monthly equity returns)"),
        Field::integer(BLOCK_YEARS, "Consecutive calendar years per block drawn.")
            .source("project choice (plain i.i.d. bootstrap of years)"),
        Field::new(
            "withdrawal",
            Kind::Object { default: Some(to_value(DEFAULT_WITHDRAWAL)), tag: Some("strategy") },
            "How spending is set each year: `strategy` and that strategy's parameters.",
        )
        .source("Bengen (1994)"),
        Field::choice::<WithdrawalStrategy>(
            "withdrawal.strategy",
            None,
            "The withdrawal strategy (docs/model.md §4).",
        ),
        Field::number(RATE, "Share of the portfolio withdrawn at the start of each year.")
            .source("the 4 % of Bengen (1994)"),
        Field::number(
            UPPER_GUARDRAIL,
            "Spending is cut when the current rate exceeds the initial by this fraction.",
        )
        .source(guyton_klinger),
        Field::number(
            LOWER_GUARDRAIL,
            "Spending is raised when the current rate falls this fraction below the initial.",
        )
        .source(guyton_klinger),
        Field::number(CUT, "The cut, as a fraction of spending.").source(guyton_klinger),
        Field::number(RAISE, "The raise, as a fraction of spending.").source(guyton_klinger),
        Field::number(MONTHLY_FLOOR, "Real monthly floor, in today's money.").source("no floor"),
        Field::number(MONTHLY_CEILING, "Real monthly ceiling, in today's money.")
            .source("no ceiling"),
        Field::new(
            INCOME.path,
            Kind::List(INCOME),
            "Income streams (pensions, social security) that reduce the net withdrawal.",
        ),
        Field::object("income[]", None, "A monthly income stream."),
        Field::new(INCOME_NAME.path, Kind::Text(INCOME_NAME), "A label, only echoed back."),
        Field::number(INCOME_AMOUNT, "Paid each month of the years given."),
        Field::integer(INCOME_START, "First year paid (1 = the first simulated year).")
            .source("the whole horizon"),
        Field::integer(INCOME_END, "Last year paid, inclusive.").source("the whole horizon"),
        Field::new(
            "income[].inflation_adjusted",
            Kind::Flag { default: true },
            "`true`: the amount is in today's money and rises with inflation; `false`: a fixed \
             nominal amount.",
        ),
    ]);
    for (rules, about, item, flag) in [
        (
            EXPENSES,
            "One-off expenses taken from the portfolio at the start of a year.",
            "expenses[]",
            "expenses[].inflation_adjusted",
        ),
        (
            INFLOWS,
            "One-off inflows added to the portfolio at the start of a year.",
            "inflows[]",
            "inflows[].inflation_adjusted",
        ),
    ] {
        f.extend([
            Field::new(rules.list.path, Kind::List(rules.list), about),
            Field::object(item, None, "A one-off amount at the start of a year."),
            Field::new(rules.name.path, Kind::Text(rules.name), "A label, only echoed back."),
            Field::integer(rules.year, "The year (1 = the first simulated year)."),
            Field::number(rules.amount, "The amount."),
            Field::new(
                flag,
                Kind::Flag { default: true },
                "`true`: the amount is in today's money; `false`: nominal.",
            ),
        ]);
    }
    f.extend([
        Field::choice(
            "rebalancing",
            Some(DEFAULT_REBALANCING),
            "When holdings are reset to the target weights (docs/model.md §6).",
        )
        .source("project choice"),
        Field::object(
            "solve",
            None,
            "Find the largest constant real `monthly_spending` whose success probability \
             reaches the target. Left out: no solving.",
        ),
        Field::number(TARGET_SUCCESS, "Target success probability."),
    ]);
    f
}

/// The years of the embedded table, the bound of [`Limit::TableYears`].
pub(crate) fn table_years() -> u32 {
    history::table().len() as u32
}

/// A rule's default as JSON, where it is a figure (`limits` sets the scenarios' default).
pub(crate) fn default_value(kind: &Kind, max_scenarios: u32) -> Option<Value> {
    match kind {
        Kind::Number(rule) => match rule.default {
            NumberDefault::Required => None,
            NumberDefault::Value(x) => Some(json!(x)),
            NumberDefault::Historical(f) => Some(json!(f(Assumptions::historical()))),
        },
        Kind::Integer(rule) => match rule.default {
            IntegerDefault::Value(n) => Some(json!(n)),
            IntegerDefault::Scenarios => Some(json!(DEFAULT_SCENARIOS.min(max_scenarios))),
            IntegerDefault::Required | IntegerDefault::Horizon | IntegerDefault::Absent(_) => None,
        },
        Kind::Choice { default, .. } => default.map(|d| json!(d)),
        Kind::Flag { default } => Some(json!(default)),
        Kind::Object { default, .. } => default.clone(),
        Kind::Matrix { default, .. } => Some(default.clone()),
        Kind::Text(_) | Kind::List(_) => None,
    }
}
