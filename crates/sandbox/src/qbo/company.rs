//! `CompanyInfo` and `Preferences` of a realm, from its configurable [`QboCompany`] (country, home
//! currency, multi-currency, tax on/off), so sync rules that depend on them — tax codes only for
//! non-US companies, currencies — can be tested. Only the properties an attribute sync reads are
//! rendered; `PartnerTaxEnabled` for non-US companies and the `NameValue` entries are
//! **(inferred)** from Intuit's entity reference, not from the reference document.

use serde_json::{Value, json};

use crate::config::QboCompany;

/// `GET /v3/company/{realm}/companyinfo/{realm}` body (without `time`).
pub fn company_info(c: &QboCompany) -> Value {
    json!({"CompanyInfo": {
        "CompanyName": c.company_name, "LegalName": c.company_name, "Country": c.country,
        "CompanyAddr": {"Country": c.country}, "SupportedLanguages": "en",
        "NameValue": [{"Name": "OfferingSku", "Value": "QuickBooks Online Plus"}],
        "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "0",
    }})
}

/// `GET /v3/company/{realm}/preferences` body (without `time`).
pub fn preferences(c: &QboCompany) -> Value {
    let us = c.country.eq_ignore_ascii_case("US");
    let tax = if us {
        json!({"UsingSalesTax": c.tax_enabled})
    } else {
        json!({"UsingSalesTax": c.tax_enabled, "PartnerTaxEnabled": c.tax_enabled})
    };
    json!({"Preferences": {
        "AccountingInfoPrefs": {"TrackDepartments": true, "ClassTrackingPerTxn": true, "DepartmentTerminology": "Location"},
        "CurrencyPrefs": {"MultiCurrencyEnabled": c.multi_currency, "HomeCurrency": {"value": c.home_currency}},
        "TaxPrefs": tax,
        "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "0",
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uk_company_with_multi_currency() {
        let c = QboCompany {
            country: "GB".into(),
            home_currency: "GBP".into(),
            multi_currency: true,
            ..QboCompany::default()
        };
        let p = preferences(&c);
        assert_eq!(
            p["Preferences"]["CurrencyPrefs"]["MultiCurrencyEnabled"],
            true
        );
        assert_eq!(
            p["Preferences"]["CurrencyPrefs"]["HomeCurrency"]["value"],
            "GBP"
        );
        assert_eq!(p["Preferences"]["TaxPrefs"]["PartnerTaxEnabled"], true);
        assert_eq!(company_info(&c)["CompanyInfo"]["Country"], "GB");
    }
}
