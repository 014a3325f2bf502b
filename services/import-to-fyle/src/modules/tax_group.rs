//! TAX_GROUP from QBO tax codes (#48): `{name, is_enabled: true, percentage}` with
//! `percentage = round(tax_rate / 100, 2)` (Fyle's admin API takes a fraction, as the
//! incumbent posts it). Created only, **never disabled**: an inactive QBO tax code leaves its
//! Fyle tax group alone (expenses already carry it). A tax code without a usable
//! `detail.tax_rate` is skipped.

use serde_json::{Value, json};

use super::{Action, Candidate, Existing, action};

/// `round(rate / 100, 2)`.
pub fn percentage(rate: f64) -> f64 {
    (rate / 100.0 * 100.0).round() / 100.0
}

fn rate_of(c: &Candidate) -> Option<f64> {
    let r = c.row.detail.get("tax_rate")?;
    r.as_f64()
        .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
        .filter(|r| r.is_finite())
}

/// The bulk rows for one batch of candidates.
pub fn payload(batch: &[Candidate], existing: &Existing) -> Vec<Value> {
    batch
        .iter()
        .filter(|c| action(c, existing) == Action::Create)
        .filter_map(|c| {
            let rate = rate_of(c)?;
            Some(json!({"name": c.name, "is_enabled": true, "percentage": percentage(rate)}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{
        SourceField, candidates,
        tests::{fyle, plan, row},
    };

    fn tax(id: &str, name: &str, rate: Value, active: bool) -> crate::modules::DestValue {
        let mut r = row("TAX_CODE", id, name, active);
        r.detail = json!({"tax_rate": rate});
        r
    }

    #[test]
    fn the_percentage_is_a_rounded_fraction() {
        assert_eq!(percentage(21.0), 0.21);
        assert_eq!(percentage(20.0), 0.2);
        assert_eq!(percentage(8.25), 0.08);
        assert_eq!(percentage(0.0), 0.0);
    }

    #[test]
    fn tax_groups_are_created_and_never_disabled() {
        let c = candidates(
            &SourceField::TaxGroup,
            &plan(),
            vec![
                tax("1", "GST @21%", json!(21.0), true),
                tax("2", "Old @5%", json!(5), false),
                tax("3", "Broken @?%", Value::Null, true),
                tax("4", "Text @7.5%", json!("7.5"), true),
            ],
        );
        let existing = Existing::new([fyle("tg1", "Old @5%", true)]);
        assert_eq!(
            payload(&c, &existing),
            [
                json!({"name": "GST @21%", "is_enabled": true, "percentage": 0.21}),
                json!({"name": "Text @7.5%", "is_enabled": true, "percentage": 0.08}),
            ]
        );
    }
}
