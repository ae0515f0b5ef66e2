//! The checks between a decoded body and a [`SimulationRequest`]: every rule of `rules`,
//! every broken one reported.
//!
//! Each check returns `Result<T, Recorded>`. A [`Recorded`] is proof that the broken rule was
//! written down, and only [`Errors::record`] can make one, so a check cannot fail without
//! saying why. Checks of sibling fields all run before their results are combined, so one
//! answer lists every broken rule, and the final assembly needs no `unwrap`.

use self::proof::{Errors, Recorded};
use super::checked::{
    Allocation, AssetAssumption, Assumptions, DegreesOfFreedom, IncomeStream, InflationAssumption,
    OneOff, ReturnModel, SimulationRequest, Solve, Withdrawal,
};
use super::correlation::{Broken, Correlation};
use super::input::{
    AllocationInput, AssetAssumptionInput, AssumptionsInput, Choice, IncomeInput, OneOffInput,
    ReturnModelInput, ReturnModelKind, SimulationRequestInput, SolveInput, WithdrawalInput,
    WithdrawalStrategy,
};
use super::rules::{
    self, IntegerDefault, IntegerRule, Limit, ListRule, MAX_YEARS, NumberDefault, NumberRule,
    OneOffRules, OnlyFor, TextRule,
};
use super::{RequestError, RequestLimits};

mod proof {
    use crate::FieldError;

    /// Proof that a broken rule was recorded.
    #[must_use = "a recorded error must fail the check that found it"]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Recorded(());

    /// The broken rules found so far.
    #[derive(Debug, Default)]
    pub(super) struct Errors(Vec<FieldError>);

    impl Errors {
        /// Writes a broken rule down; the only way to make a [`Recorded`].
        pub(super) fn record(
            &mut self,
            field: impl Into<String>,
            message: impl Into<String>,
        ) -> Recorded {
            self.0.push(FieldError::new(field, message));
            Recorded(())
        }

        pub(super) fn into_vec(self) -> Vec<FieldError> {
            self.0
        }

        pub(super) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}

type Checked<T> = Result<T, Recorded>;

/// Checks a decoded body against every rule, collecting all violations.
pub(super) fn validate(
    input: SimulationRequestInput,
    limits: &RequestLimits,
) -> Result<SimulationRequest, RequestError> {
    let mut v = Validator { errors: Errors::default(), limits, horizon: MAX_YEARS };
    match v.request(input) {
        Ok(request) if v.errors.is_empty() => Ok(request),
        _ => Err(RequestError::Invalid(v.errors.into_vec())),
    }
}

/// Every item's check, all run, then combined: the first failure stands for the list.
fn all<T>(checks: Vec<Checked<T>>) -> Checked<Vec<T>> {
    checks.into_iter().collect()
}

struct Validator<'a> {
    errors: Errors,
    limits: &'a RequestLimits,
    /// The request's horizon once `years` is known (the largest allowed until then, and while
    /// `years` is invalid): the bound of the cash flows' years.
    horizon: u32,
}

impl Validator<'_> {
    fn request(&mut self, input: SimulationRequestInput) -> Checked<SimulationRequest> {
        let starting_portfolio = self.number(&rules::STARTING_PORTFOLIO, input.starting_portfolio);
        let monthly_spending = self.number(&rules::MONTHLY_SPENDING, input.monthly_spending);
        let years = self.integer(&rules::YEARS, input.years);
        let n_scenarios = self.integer(&rules::N_SCENARIOS, input.n_scenarios);
        let seed = self.seed(input.seed);
        let allocation = self.allocation(input.allocation);
        let assumptions = self.assumptions(input.assumptions);
        let annual_fee = self.number(&rules::ANNUAL_FEE, input.annual_fee);
        let return_model = self.return_model(input.return_model, years.ok());
        let withdrawal = self.withdrawal(input.withdrawal);
        if let Ok(years) = years {
            self.horizon = years;
        }
        let income = self.income(input.income);
        let expenses = self.one_offs(&rules::EXPENSES, input.expenses);
        let inflows = self.one_offs(&rules::INFLOWS, input.inflows);
        let solve = self.solve(input.solve, withdrawal.as_ref().ok());
        Ok(SimulationRequest {
            starting_portfolio: starting_portfolio?,
            monthly_spending: monthly_spending?,
            years: years?,
            n_scenarios: n_scenarios?,
            seed: seed?,
            allocation: allocation?,
            assumptions: assumptions?,
            annual_fee: annual_fee?,
            return_model: return_model?,
            withdrawal: withdrawal?,
            income: income?,
            expenses: expenses?,
            inflows: inflows?,
            rebalancing: input.rebalancing.unwrap_or(rules::DEFAULT_REBALANCING),
            solve: solve?,
        })
    }

    // -----------------------------------------------------------------------------------------
    // One field by its rule.
    // -----------------------------------------------------------------------------------------

    fn number(&mut self, rule: &NumberRule, value: Option<f64>) -> Checked<f64> {
        self.number_at(rule, rule.path, value)
    }

    /// `rule` for the field at `field` (a list item's path, with its index).
    fn number_at(&mut self, rule: &NumberRule, field: &str, value: Option<f64>) -> Checked<f64> {
        match (value, rule.default) {
            (Some(x), _) => rule.check(x).map_err(|message| self.errors.record(field, message)),
            (None, NumberDefault::Value(x)) => Ok(x),
            (None, NumberDefault::Historical(of)) => Ok(of(Assumptions::historical())),
            (None, NumberDefault::Required) => Err(self.errors.record(field, rules::REQUIRED)),
        }
    }

    fn integer(&mut self, rule: &IntegerRule, value: Option<u32>) -> Checked<u32> {
        self.integer_at(rule, rule.path, value)
    }

    fn integer_at(&mut self, rule: &IntegerRule, field: &str, value: Option<u32>) -> Checked<u32> {
        match (value, rule.default) {
            (Some(x), _) => {
                let max = self.max(rule.max);
                if (rule.min..=max).contains(&u64::from(x)) {
                    Ok(x)
                } else {
                    Err(self.errors.record(field, rule.message_with_max(&max)))
                }
            }
            (None, IntegerDefault::Value(x)) => Ok(x),
            (None, IntegerDefault::Scenarios) => {
                Ok(rules::DEFAULT_SCENARIOS.min(self.limits.max_scenarios))
            }
            (None, IntegerDefault::Horizon) => Ok(self.horizon),
            // A rule whose absence leaves nothing to fill in (the seed) is checked by its own
            // method; here it can only mean the value is missing.
            (None, IntegerDefault::Required | IntegerDefault::Absent(_)) => {
                Err(self.errors.record(field, rules::REQUIRED))
            }
        }
    }

    /// An optional text at `field` (a list item's path) by `rule`.
    fn text_at(
        &mut self,
        rule: &TextRule,
        field: &str,
        value: Option<String>,
    ) -> Checked<Option<String>> {
        match value {
            Some(text) => match rule.check(&text) {
                Ok(_) => Ok(Some(text)),
                Err(message) => Err(self.errors.record(field, message)),
            },
            None => Ok(None),
        }
    }

    fn max(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Fixed(max) => max,
            Limit::TableYears => u64::from(rules::table_years()),
            Limit::Scenarios => u64::from(self.limits.max_scenarios),
            Limit::Horizon => u64::from(self.horizon),
        }
    }

    fn seed(&mut self, seed: Option<u64>) -> Checked<Option<u64>> {
        let rule = &rules::SEED;
        match seed {
            Some(s) if !(rule.min..=self.max(rule.max)).contains(&s) => {
                let message = rule.message_with_max(&self.max(rule.max));
                Err(self.errors.record(rule.path, message))
            }
            seed => Ok(seed),
        }
    }

    /// At most `rule.max_items` items, or an error naming the list.
    fn list<T>(&mut self, rule: &ListRule, items: Option<Vec<T>>) -> Checked<Vec<T>> {
        let items = items.unwrap_or_default();
        if items.len() > rule.max_items {
            return Err(self.errors.record(rule.path, rule.message()));
        }
        Ok(items)
    }

    /// Refuses each given parameter that the chosen kind or strategy does not take (as
    /// `deny_unknown_fields` would have, had each kind its own object).
    fn only_parameters_of<T: Choice>(
        &mut self,
        object: &str,
        tag: &str,
        chosen: T,
        parameters: &[(&str, OnlyFor)],
        given: &[(&str, bool)],
    ) -> Checked<()> {
        let takes: Vec<&str> = parameters
            .iter()
            .filter(|(_, only_for)| only_for.names().contains(&chosen.name()))
            .map(|(path, _)| rules::name_of(path))
            .collect();
        let listed = match &takes[..] {
            [] => "none".to_owned(),
            _ => takes.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
        };
        let refused: Vec<Recorded> = given
            .iter()
            .filter(|(name, given)| *given && !takes.contains(name))
            .map(|(name, _)| {
                let message = rules::NOT_A_PARAMETER.message_with(&[
                    ("tag", &tag),
                    ("chosen", &chosen.name()),
                    ("takes", &listed),
                ]);
                self.errors.record(format!("{object}.{name}"), message)
            })
            .collect();
        refused.into_iter().next().map_or(Ok(()), Err)
    }

    // -----------------------------------------------------------------------------------------
    // The parts of a request.
    // -----------------------------------------------------------------------------------------

    fn allocation(&mut self, input: Option<AllocationInput>) -> Checked<Allocation> {
        let Some(a) = input else { return Ok(rules::DEFAULT_ALLOCATION) };
        let [stocks_rule, bonds_rule, cash_rule] = &rules::ALLOCATION;
        let stocks = self.number(stocks_rule, a.stocks);
        let bonds = self.number(bonds_rule, a.bonds);
        let cash = self.number(cash_rule, a.cash);
        let (stocks, bonds, cash) = (stocks?, bonds?, cash?);
        let sum = stocks + bonds + cash;
        if (sum - 1.0).abs() > rules::SUM_TOLERANCE {
            let message = rules::ALLOCATION_SUM.message_with(&[("sum", &sum)]);
            return Err(self.errors.record(rules::ALLOCATION_SUM.field, message));
        }
        Ok(Allocation { stocks, bonds, cash })
    }

    fn assumptions(&mut self, input: Option<AssumptionsInput>) -> Checked<Assumptions> {
        let defaults = Assumptions::historical();
        let Some(a) = input else { return Ok(*defaults) };
        let mut asset = |i: usize, x: Option<AssetAssumptionInput>| -> Checked<AssetAssumption> {
            let x = x.unwrap_or_default();
            let mean_return = self.number(&rules::MEAN_RETURN[i], x.mean_return);
            let volatility = self.number(&rules::VOLATILITY[i], x.volatility);
            Ok(AssetAssumption { mean_return: mean_return?, volatility: volatility? })
        };
        let stocks = asset(0, a.stocks);
        let bonds = asset(1, a.bonds);
        let cash = asset(2, a.cash);
        let inflation = a.inflation.unwrap_or_default();
        let mean = self.number(&rules::INFLATION_MEAN, inflation.mean);
        let volatility = self.number(&rules::INFLATION_VOLATILITY, inflation.volatility);
        let correlation = match a.correlation {
            None => Ok(defaults.correlation),
            Some(rows) => self.correlation(&rows),
        };
        Ok(Assumptions {
            stocks: stocks?,
            bonds: bonds?,
            cash: cash?,
            correlation: correlation?,
            inflation: InflationAssumption { mean: mean?, volatility: volatility? },
        })
    }

    fn correlation(&mut self, rows: &[Vec<f64>]) -> Checked<Correlation> {
        let field = rules::CORRELATION_SHAPE.field;
        let matrix: Option<[[f64; 3]; 3]> = (rows.len() == 3)
            .then(|| rows.iter().map(|row| <[f64; 3]>::try_from(row.as_slice()).ok()))
            .and_then(|rows| rows.collect::<Option<Vec<_>>>())
            .and_then(|rows| rows.try_into().ok());
        let Some(matrix) = matrix else {
            return Err(self.errors.record(field, rules::CORRELATION_SHAPE.message));
        };
        Correlation::try_from(matrix).map_err(|broken| {
            let (field, message) = match broken {
                Broken::Cell(i, j) => {
                    (format!("{field}[{i}][{j}]"), rules::CORRELATION_CELL.message())
                }
                Broken::Diagonal(i) => {
                    (format!("{field}[{i}][{i}]"), rules::CORRELATION_DIAGONAL.message.to_owned())
                }
                Broken::Asymmetric(i, j) => (
                    format!("{field}[{i}][{j}]"),
                    rules::CORRELATION_SYMMETRIC.message_with(&[("i", &i), ("j", &j)]),
                ),
                Broken::NotPositiveSemiDefinite => {
                    (field.to_owned(), rules::CORRELATION_PSD.message.to_owned())
                }
            };
            self.errors.record(field, message)
        })
    }

    fn return_model(
        &mut self,
        input: Option<ReturnModelInput>,
        years: Option<u32>,
    ) -> Checked<ReturnModel> {
        let Some(input) = input else { return Ok(rules::DEFAULT_RETURN_MODEL) };
        let given = [("df", input.df.is_some()), ("block_years", input.block_years.is_some())];
        let kind = input.kind;
        self.only_parameters_of(
            "return_model",
            "kind",
            kind,
            &rules::RETURN_MODEL_PARAMETERS,
            &given,
        )?;
        Ok(match kind {
            ReturnModelKind::Lognormal => ReturnModel::Lognormal,
            ReturnModelKind::Normal => ReturnModel::Normal,
            ReturnModelKind::StudentT => {
                let rule = &rules::DF;
                let df = self.number(rule, input.df)?;
                let df = DegreesOfFreedom::new(df)
                    .ok_or_else(|| self.errors.record(rule.path, rule.message()))?;
                ReturnModel::StudentT { df }
            }
            ReturnModelKind::Bootstrap => ReturnModel::Bootstrap {
                block_years: self.integer(&rules::BLOCK_YEARS, input.block_years)?,
            },
            ReturnModelKind::Historical => {
                let table_years = rules::table_years();
                if let Some(y) = years
                    && y > table_years
                {
                    let rule = &rules::HISTORICAL_YEARS;
                    let message = rule.message_with(&[("table_years", &table_years)]);
                    return Err(self.errors.record(rule.field, message));
                }
                ReturnModel::Historical
            }
        })
    }

    fn withdrawal(&mut self, input: Option<WithdrawalInput>) -> Checked<Withdrawal> {
        let Some(input) = input else { return Ok(rules::DEFAULT_WITHDRAWAL) };
        let given = [
            ("rate", input.rate.is_some()),
            ("upper_guardrail", input.upper_guardrail.is_some()),
            ("lower_guardrail", input.lower_guardrail.is_some()),
            ("cut", input.cut.is_some()),
            ("raise", input.raise.is_some()),
            ("monthly_floor", input.monthly_floor.is_some()),
            ("monthly_ceiling", input.monthly_ceiling.is_some()),
        ];
        let strategy = input.strategy;
        self.only_parameters_of(
            "withdrawal",
            "strategy",
            strategy,
            &rules::WITHDRAWAL_PARAMETERS,
            &given,
        )?;
        Ok(match strategy {
            WithdrawalStrategy::ConstantReal => Withdrawal::ConstantReal,
            WithdrawalStrategy::PercentOfPortfolio => {
                Withdrawal::PercentOfPortfolio { rate: self.number(&rules::RATE, input.rate)? }
            }
            WithdrawalStrategy::Guardrails => {
                let upper = self.number(&rules::UPPER_GUARDRAIL, input.upper_guardrail);
                let lower = self.number(&rules::LOWER_GUARDRAIL, input.lower_guardrail);
                let cut = self.number(&rules::CUT, input.cut);
                let raise = self.number(&rules::RAISE, input.raise);
                Withdrawal::Guardrails {
                    upper_guardrail: upper?,
                    lower_guardrail: lower?,
                    cut: cut?,
                    raise: raise?,
                }
            }
            WithdrawalStrategy::FloorCeiling => {
                let rate = self.number(&rules::RATE, input.rate);
                let floor = self.number(&rules::MONTHLY_FLOOR, input.monthly_floor);
                let ceiling = self.number(&rules::MONTHLY_CEILING, input.monthly_ceiling);
                let (rate, monthly_floor, monthly_ceiling) = (rate?, floor?, ceiling?);
                if monthly_ceiling < monthly_floor {
                    let rule = &rules::CEILING_ABOVE_FLOOR;
                    return Err(self.errors.record(rule.field, rule.message));
                }
                Withdrawal::FloorCeiling { rate, monthly_floor, monthly_ceiling }
            }
        })
    }

    fn income(&mut self, input: Option<Vec<IncomeInput>>) -> Checked<Vec<IncomeStream>> {
        let items = self.list(&rules::INCOME, input)?;
        let checks = items.into_iter().enumerate().map(|(i, s)| self.income_stream(i, s)).collect();
        all(checks)
    }

    fn income_stream(&mut self, i: usize, s: IncomeInput) -> Checked<IncomeStream> {
        let at = |path: &str| rules::item_path(path, i);
        let (amount, start, end) =
            (&rules::INCOME_AMOUNT, &rules::INCOME_START, &rules::INCOME_END);
        let name = self.text_at(&rules::INCOME_NAME, &at(rules::INCOME_NAME.path), s.name);
        let monthly_amount = self.number_at(amount, &at(amount.path), s.monthly_amount);
        let start_year = self.integer_at(start, &at(start.path), s.start_year);
        let end_year = self.integer_at(end, &at(end.path), s.end_year);
        let (start_year, end_year) = (start_year?, end_year?);
        if end_year < start_year {
            let rule = &rules::END_AFTER_START;
            return Err(self.errors.record(at(rule.field), rule.message));
        }
        Ok(IncomeStream {
            name: name?,
            monthly_amount: monthly_amount?,
            start_year,
            end_year,
            inflation_adjusted: s.inflation_adjusted.unwrap_or(true),
        })
    }

    fn one_offs(
        &mut self,
        list: &OneOffRules,
        input: Option<Vec<OneOffInput>>,
    ) -> Checked<Vec<OneOff>> {
        let items = self.list(&list.list, input)?;
        let checks = items
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let at = |path: &str| rules::item_path(path, i);
                let name = self.text_at(&list.name, &at(list.name.path), o.name);
                let year = self.integer_at(&list.year, &at(list.year.path), o.year);
                let amount = self.number_at(&list.amount, &at(list.amount.path), o.amount);
                Ok(OneOff {
                    name: name?,
                    year: year?,
                    amount: amount?,
                    inflation_adjusted: o.inflation_adjusted.unwrap_or(true),
                })
            })
            .collect();
        all(checks)
    }

    fn solve(
        &mut self,
        input: Option<SolveInput>,
        withdrawal: Option<&Withdrawal>,
    ) -> Checked<Option<Solve>> {
        let Some(s) = input else { return Ok(None) };
        let target_success = self.number(&rules::TARGET_SUCCESS, s.target_success)?;
        // A withdrawal that broke its own rules was reported there.
        if !matches!(withdrawal, Some(Withdrawal::ConstantReal) | None) {
            let rule = &rules::SOLVE_CONSTANT_REAL;
            return Err(self.errors.record(rule.field, rule.message));
        }
        Ok(Some(Solve { target_success }))
    }
}
