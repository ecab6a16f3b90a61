//! Content patterns: regular expressions over the text of a file's first
//! bytes, for the personal data rules look for (`[[classify]] patterns`).
//!
//! A few are built in; `[[pattern]]` adds or replaces them by name. They
//! run together, in one pass over the sample ([`regex::bytes::RegexSet`]),
//! and only over text: a sample with a NUL byte is binary, and its bytes
//! are not read as characters.

use serde::Deserialize;

/// A `[[pattern]]`: a named regular expression.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// The name rules use.
    pub name: String,
    /// The expression, in the syntax of Rust's regex crate (no look-around
    /// or back-references, so a match never takes more than linear time).
    pub regex: String,
}

/// The built-in patterns: (name, expression).
pub const BUILT_IN: [(&str, &str); 4] = [
    // A United States social security number as written: 3-2-4 digits.
    ("us-ssn", r"\b[0-8]\d{2}-\d{2}-\d{4}\b"),
    // A medical record number after its label: digits, perhaps after a
    // short letter prefix.
    (
        "mrn",
        r"\b(?i:MRN|medical record (?:number|no\.?|#))\s*[:#=]?\s*[A-Z]{0,3}-?\d{5,12}\b",
    ),
    // A date of birth after its label.
    (
        "date-of-birth",
        r"(?i)\b(?:DOB|date of birth|birth ?date)\s*[:=]?\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b",
    ),
    // An HL7 v2 patient identification segment (segments end in CR).
    ("hl7-pid", r"(?:^|[\r\n])PID\|"),
];

/// The patterns a configuration may use: the built-in ones, then its own
/// (a configured name replaces a built-in one).
pub fn all(configured: &[PatternConfig]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = BUILT_IN
        .iter()
        .filter(|(name, _)| !configured.iter().any(|p| p.name == *name))
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    out.extend(configured.iter().map(|p| (p.name.clone(), p.regex.clone())));
    out
}

/// Whether `sample` is text the patterns should read.
pub fn is_text(sample: &[u8]) -> bool {
    !sample.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::Regex;

    fn hit(name: &str, text: &str) -> bool {
        let (_, re) = BUILT_IN.iter().find(|(n, _)| *n == name).unwrap();
        Regex::new(re).unwrap().is_match(text.as_bytes())
    }

    #[test]
    fn the_built_in_patterns_find_what_they_name_and_not_lookalikes() {
        assert!(hit("us-ssn", "SSN: 123-45-6789."));
        assert!(!hit("us-ssn", "order 2026-12-0700"));
        assert!(!hit("us-ssn", "phone 555-123-4567"));
        assert!(hit("mrn", "Patient MRN: A1234567"));
        assert!(hit("mrn", "medical record number 00123456"));
        assert!(!hit("mrn", "the MRN field is empty"));
        assert!(hit("date-of-birth", "DOB: 1961-04-12"));
        assert!(hit("date-of-birth", "Date of birth 12/04/1961"));
        assert!(!hit("date-of-birth", "released 2026-12-07"));
        assert!(hit("hl7-pid", "MSH|^~\\&|A\rPID|1||123\r"));
    }

    #[test]
    fn a_configured_pattern_replaces_the_built_in_one_of_its_name() {
        let mine = PatternConfig {
            name: "mrn".into(),
            regex: "MRN-\\d+".into(),
        };
        let all = all(&[mine]);
        assert_eq!(all.iter().filter(|(n, _)| n == "mrn").count(), 1);
        assert_eq!(all.last().unwrap().1, "MRN-\\d+");
    }
}
