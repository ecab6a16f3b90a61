//! Content patterns: regular expressions over the text of a file's first
//! bytes, for the personal data rules look for (`[[classify]] patterns`).
//!
//! A few are built in; `[[pattern]]` adds or replaces them by name. They
//! run together, in one pass over the sample ([`regex::bytes::RegexSet`]),
//! over every sample, binary or not, with UTF-16 text read as text
//! ([`text_of`]).

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
        r"\b(?i:MRN|medical record (?:number|no\.?|#))\s*[:#=]?\s*[A-Za-z]{0,3}-?\d{5,12}\b",
    ),
    // A date of birth after its label.
    (
        "date-of-birth",
        r"(?i)\b(?:DOB|date of birth|birth ?date)\s*[:=]?\s*(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|(?:19|20)\d{6}|\d{1,2}\.? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{4}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4})\b",
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

/// The bytes the patterns read in `sample`: UTF-16 with a byte order
/// mark (Windows and spreadsheet exports) as UTF-8, anything else as is.
pub fn text_of(sample: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let units = |le: bool| {
        sample[2..].chunks_exact(2).map(move |b| {
            let pair = [b[0], b[1]];
            if le {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        })
    };
    let le = match sample.get(..2) {
        Some([0xff, 0xfe]) => true,
        Some([0xfe, 0xff]) => false,
        _ => return std::borrow::Cow::Borrowed(sample),
    };
    let text: String = char::decode_utf16(units(le))
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    std::borrow::Cow::Owned(text.into_bytes())
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
        assert!(hit("date-of-birth", "DOB:19610412"));
        assert!(hit("date-of-birth", "Date of Birth: April 12, 1961"));
        assert!(hit("date-of-birth", "born: dob 12 Apr 1961"));
        assert!(hit("mrn", "mrn: ab-1234567"));
        assert!(hit("hl7-pid", "MSH|^~\\&|A\rPID|1||123\r"));
    }

    #[test]
    fn utf16_text_is_read_as_text() {
        let mut le = vec![0xff, 0xfe];
        for u in "SSN 123-45-6789".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(&*text_of(&le), b"SSN 123-45-6789");
        assert_eq!(&*text_of(b"plain"), b"plain");
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
