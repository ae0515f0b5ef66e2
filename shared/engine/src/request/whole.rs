//! Whole-number fields as JSON Schema means them: `28` and `28.0` are the same integer
//! (JSON Schema counts any number with a zero fractional part as an integer, and the published
//! schema of a request says `integer`). serde alone would refuse `28.0` for a `u32`, so a
//! client whose JSON library writes every number as a float, or a tool that checks requests
//! against the schema, would be refused a valid request. `3.5`, negatives and values past the
//! type's range are still refused, in the words `decode` uses for integers.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

use super::decode::WHOLE_NUMBER;

/// For `#[serde(default, deserialize_with = "whole::option")]` on an `Option<u32>`/`Option<u64>`.
pub(super) fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(WHOLE_NUMBER)
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(WholeVisitor(PhantomData)).map(Some)
    }
}

/// 2^53: every whole number below it is a float exactly, and so are its neighbours, so one
/// written as `28.0` or `1e15` is the number meant.
const EXACT_BELOW: f64 = 9_007_199_254_740_992.0;
/// The first float past `u64::MAX`.
const TWO_TO_64: f64 = 18_446_744_073_709_551_616.0;

struct WholeVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> WholeVisitor<T> {
    fn fit<E: Error>(self, n: u64, unexpected: Unexpected) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::invalid_value(unexpected, &self))
    }
}

impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(WHOLE_NUMBER)
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<T, E> {
        self.fit(n, Unexpected::Unsigned(n))
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<T, E> {
        let unexpected = Unexpected::Signed(n);
        let n = u64::try_from(n).map_err(|_| E::invalid_value(unexpected, &self))?;
        self.fit(n, unexpected)
    }

    fn visit_f64<E: Error>(self, x: f64) -> Result<T, E> {
        if x.fract() == 0.0 && (0.0..EXACT_BELOW).contains(&x) {
            self.fit(x as u64, Unexpected::Float(x))
        } else if (EXACT_BELOW..TWO_TO_64).contains(&x) && T::try_from(x as u64).is_ok() {
            // From 2^53 on a float is the nearest of numbers 2 or more apart: the whole number
            // it reads as need not be the one written (`4611686018427387905.0` reads as
            // ...904), and a seed taken so would not reproduce the run its sender meant.
            Err(E::custom(format_args!(
                "{x:.0} is written with a fraction or an exponent and is 2^53 or more, where such \
                 a number may not be the one sent; write it as a plain integer"
            )))
        } else {
            Err(E::invalid_type(Unexpected::Float(x), &self))
        }
    }
}
