//! Tax codes: the effective purchase rate and the attribute's name (incumbent §2.2,
//! reference §3.4).
//!
//! - Only codes with a non-empty `PurchaseTaxRateList.TaxRateDetail` become attributes (US
//!   companies' `TAX`/`NON` codes have none).
//! - The effective rate is the sum of `RateValue` over every referenced `TaxRate` (a rate
//!   referenced twice counts twice, as in the incumbent). Rates come from a [`TaxRateLookup`]
//!   the caller fills: it asks [`required_tax_rate_ids`] which rates a code needs, reads the
//!   missing ones (`GET /taxrate/{id}`), and keeps them for the rest of the run, so a rate shared
//!   by fifty codes is read once (the incumbent reads it fifty times).
//! - A referenced rate the lookup does not know skips the code with
//!   [`SkipReason::MissingTaxRate`](super::SkipReason::MissingTaxRate). Failure policy: **closed**
//!   — a tax code with a wrong rate would put wrong tax on expenses, a missing one only delays
//!   it. The skip says nothing about whether the code still exists: callers must not count it
//!   as absent (no deactivation because of it).
//! - Value `"{Name} @{rate}%"`, detail `{tax_rate, tax_refs: [{value, name, taxRate}]}` — the
//!   incumbent's shape.
//!
//! **Number formatting** (decision). Rates are summed in millionths of a percent (integers), so
//! `0.1 + 0.2` is `0.3`, not `0.30000000000000004`, and printed in the shortest form: no
//! trailing zeros, no trailing point — `7.5`, `10`, `9.975`, `0`. The incumbent prints Python's
//! float repr, so a code whose rates arrive as `10.0` was `"… @10.0%"` there and is `"… @10%"`
//! here; a workspace moved from the incumbent sees that once, as a rename.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::fields::{Malformed, id_text};

/// `RateValue`s by `TaxRate` id, filled by the caller (see the module docs).
pub trait TaxRateLookup {
    /// The `RateValue` (percent) of the tax rate with this id, or `None` if it is unknown.
    fn rate_value(&self, tax_rate_id: &str) -> Option<f64>;
}

impl TaxRateLookup for HashMap<String, f64> {
    fn rate_value(&self, tax_rate_id: &str) -> Option<f64> {
        self.get(tax_rate_id).copied()
    }
}

impl TaxRateLookup for BTreeMap<String, f64> {
    fn rate_value(&self, tax_rate_id: &str) -> Option<f64> {
        self.get(tax_rate_id).copied()
    }
}

/// A lookup that knows no rate (for entities other than tax codes).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTaxRates;

impl TaxRateLookup for NoTaxRates {
    fn rate_value(&self, _: &str) -> Option<f64> {
        None
    }
}

/// The `(Id, RateValue)` of a `TaxRate` entity as `GET /taxrate/{id}` returns it (the inner
/// object), for filling a lookup. A rate without `RateValue` counts as 0, as in the incumbent;
/// `None` when the object has no usable `Id`.
pub fn tax_rate_entry(tax_rate: &Value) -> Option<(String, f64)> {
    let id = id_text(tax_rate.get("Id")?)?;
    let rate = tax_rate
        .get("RateValue")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Some((id, rate))
}

/// The distinct `TaxRate` ids a tax code's purchase rates reference, in order of first
/// appearance (sales rates are not needed). Empty for codes that will be skipped anyway.
pub fn required_tax_rate_ids(tax_code: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for detail in purchase_rate_details(tax_code) {
        if let Some(id) = rate_ref_id(detail)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    ids
}

/// The effective purchase rate of a tax code and its `detail`, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaxOutcome {
    Rated { rate: Rate, detail: Value },
    NoPurchaseRates,
    MissingRate(String),
    Malformed(Malformed),
}

pub(crate) fn rate_tax_code(tax_code: &Value, rates: &dyn TaxRateLookup) -> TaxOutcome {
    let details = purchase_rate_details(tax_code);
    if details.is_empty() {
        return TaxOutcome::NoPurchaseRates;
    }
    let mut total = Rate::ZERO;
    let mut refs = Vec::with_capacity(details.len());
    for detail in details {
        let Some(id) = rate_ref_id(detail) else {
            return TaxOutcome::Malformed(Malformed(
                "PurchaseTaxRateList.TaxRateDetail.TaxRateRef.value",
            ));
        };
        let Some(value) = rates.rate_value(&id) else {
            return TaxOutcome::MissingRate(id);
        };
        let Some(rate) = Rate::from_percent(value) else {
            return TaxOutcome::Malformed(Malformed("TaxRate.RateValue"));
        };
        total = match total.checked_add(rate) {
            Some(sum) => sum,
            None => return TaxOutcome::Malformed(Malformed("TaxRate.RateValue")),
        };
        let name = detail
            .get("TaxRateRef")
            .and_then(|r| r.get("name"))
            .cloned()
            .unwrap_or(Value::Null);
        refs.push(json!({"value": id, "name": name, "taxRate": rate.to_json()}));
    }
    if total.is_negative() {
        // The incumbent keeps only codes whose effective rate is >= 0.
        return TaxOutcome::Malformed(Malformed("TaxRate.RateValue"));
    }
    TaxOutcome::Rated {
        rate: total,
        detail: json!({"tax_rate": total.to_json(), "tax_refs": refs}),
    }
}

/// `"{Name} @{rate}%"`.
pub(crate) fn tax_code_value(name: &str, rate: Rate) -> String {
    format!("{name} @{rate}%")
}

fn purchase_rate_details(tax_code: &Value) -> &[Value] {
    tax_code
        .get("PurchaseTaxRateList")
        .and_then(|list| list.get("TaxRateDetail"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn rate_ref_id(detail: &Value) -> Option<String> {
    id_text(detail.get("TaxRateRef")?.get("value")?)
}

/// A tax rate in millionths of a percent: exact sums, shortest printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(i64);

impl Rate {
    const SCALE: i64 = 1_000_000;
    const ZERO: Rate = Rate(0);
    /// Far beyond any real rate; keeps the arithmetic inside `i64`.
    const MAX_ABS_PERCENT: f64 = 1.0e9;

    /// A `RateValue` (percent), rounded to a millionth; `None` if not a sane finite number.
    pub fn from_percent(percent: f64) -> Option<Rate> {
        if !percent.is_finite() || percent.abs() > Self::MAX_ABS_PERCENT {
            return None;
        }
        // In range by the check above, so the cast cannot saturate.
        let millionths = (percent * Self::SCALE as f64).round() as i64;
        Some(Rate(millionths))
    }

    fn checked_add(self, other: Rate) -> Option<Rate> {
        self.0.checked_add(other.0).map(Rate)
    }

    fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The rate as a JSON number: an integer when whole (`13`), otherwise the decimal printed
    /// by [`std::fmt::Display`] (`7.5`).
    pub fn to_json(self) -> Value {
        if self.0 % Self::SCALE == 0 {
            json!(self.0 / Self::SCALE)
        } else {
            self.to_string()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number)
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = Self::SCALE.unsigned_abs();
        let (whole, fraction) = (abs / scale, abs % scale);
        if fraction == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(p: f64) -> Rate {
        Rate::from_percent(p).expect("a sane rate")
    }

    #[test]
    fn rates_print_in_their_shortest_form() {
        assert_eq!(rate(7.5).to_string(), "7.5");
        assert_eq!(rate(7.50).to_string(), "7.5");
        assert_eq!(rate(10.0).to_string(), "10");
        assert_eq!(rate(9.975).to_string(), "9.975");
        assert_eq!(rate(0.0).to_string(), "0");
        assert_eq!(rate(0.05).to_string(), "0.05");
        assert_eq!(rate(-2.5).to_string(), "-2.5");
    }

    #[test]
    fn sums_are_exact_in_decimal() {
        let sum = rate(0.1).checked_add(rate(0.2)).expect("no overflow");
        assert_eq!(sum.to_string(), "0.3");
        assert_eq!(sum.to_json(), json!(0.3));
        let gst_pst = rate(5.0).checked_add(rate(9.975)).expect("no overflow");
        assert_eq!(gst_pst.to_string(), "14.975");
    }

    #[test]
    fn whole_rates_are_json_integers() {
        assert_eq!(rate(13.0).to_json(), json!(13));
        assert!(rate(13.0).to_json().is_u64());
        assert_eq!(rate(7.5).to_json(), json!(7.5));
    }

    #[test]
    fn absurd_rates_are_refused() {
        assert_eq!(Rate::from_percent(f64::NAN), None);
        assert_eq!(Rate::from_percent(f64::INFINITY), None);
        assert_eq!(Rate::from_percent(1.0e12), None);
    }

    #[test]
    fn tax_rate_entries_read_id_and_rate_value() {
        let on_purchase = json!({"Id": "6", "Name": "ON TAX PURCHASE", "RateValue": 13});
        assert_eq!(tax_rate_entry(&on_purchase), Some(("6".into(), 13.0)));
        let no_value = json!({"Id": "7", "Name": "Exempt"});
        assert_eq!(tax_rate_entry(&no_value), Some(("7".into(), 0.0)));
        assert_eq!(tax_rate_entry(&json!({"RateValue": 5})), None);
    }

    #[test]
    fn required_ids_are_distinct_purchase_rates_in_order() {
        let code = json!({
            "Name": "GST/PST",
            "SalesTaxRateList": {"TaxRateDetail": [
                {"TaxRateRef": {"value": "1", "name": "GST sales"}}]},
            "PurchaseTaxRateList": {"TaxRateDetail": [
                {"TaxRateRef": {"value": "12", "name": "PST"}, "TaxOrder": 1},
                {"TaxRateRef": {"value": "4", "name": "GST"}, "TaxOrder": 0},
                {"TaxRateRef": {"value": "12", "name": "PST"}, "TaxOrder": 2}]}
        });
        assert_eq!(required_tax_rate_ids(&code), ["12", "4"]);
        assert!(required_tax_rate_ids(&json!({"Name": "TAX"})).is_empty());
    }

    #[test]
    fn a_rate_referenced_twice_counts_twice() {
        let code = json!({"PurchaseTaxRateList": {"TaxRateDetail": [
            {"TaxRateRef": {"value": "3", "name": "Levy"}},
            {"TaxRateRef": {"value": "3", "name": "Levy"}}]}});
        let rates: HashMap<String, f64> = [("3".to_owned(), 2.5)].into();
        match rate_tax_code(&code, &rates) {
            TaxOutcome::Rated { rate, detail } => {
                assert_eq!(rate.to_string(), "5");
                assert_eq!(detail["tax_refs"].as_array().map(Vec::len), Some(2));
            }
            other => panic!("expected a rate, got {other:?}"),
        }
    }
}
