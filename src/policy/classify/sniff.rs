//! File types told from a file's first bytes, for `[[classify]] types`.
//!
//! Each test reads the format's own signature (a magic number, a header's
//! fixed fields), never the file name, so a DICOM image saved as `.bin` is
//! still a DICOM image. A sample too short for a signature is no type.

use serde::{Deserialize, Serialize};

/// A kind of file a rule can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// A DICOM Part 10 file: 128 bytes of preamble, then `DICM`.
    Dicom,
    /// An HL7 version 2 message or batch: an `MSH`, `FHS` or `BHS` segment
    /// with its separator and encoding characters.
    Hl7,
    /// A FHIR resource in JSON (`"resourceType": "Patient"`) or XML (in the
    /// `http://hl7.org/fhir` namespace).
    Fhir,
    /// A PDF document.
    Pdf,
    /// A PostgreSQL relation page (heap, index) or write-ahead log segment.
    Postgresql,
    /// An SQLite database.
    Sqlite,
    /// A MySQL or MariaDB tablespace (InnoDB) or MyISAM index.
    Mysql,
    /// An office document: OOXML (docx, xlsx, pptx), OpenDocument, the
    /// older OLE2 formats (doc, xls, ppt) or RTF.
    Office,
}

impl FileType {
    /// Every type, in the order they are tested.
    pub const ALL: [FileType; 8] = [
        FileType::Dicom,
        FileType::Sqlite,
        FileType::Pdf,
        FileType::Office,
        FileType::Hl7,
        FileType::Fhir,
        FileType::Mysql,
        FileType::Postgresql,
    ];

    /// The name rules use.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Dicom => "dicom",
            FileType::Hl7 => "hl7",
            FileType::Fhir => "fhir",
            FileType::Pdf => "pdf",
            FileType::Postgresql => "postgresql",
            FileType::Sqlite => "sqlite",
            FileType::Mysql => "mysql",
            FileType::Office => "office",
        }
    }

    /// Whether `head`, a file's first bytes, has this type's signature.
    pub fn matches(self, head: &[u8]) -> bool {
        match self {
            FileType::Dicom => head.get(128..132) == Some(b"DICM"),
            FileType::Sqlite => head.starts_with(b"SQLite format 3\0"),
            // The header may come anywhere in the first 1024 bytes.
            FileType::Pdf => find(&head[..head.len().min(1024)], b"%PDF-").is_some(),
            FileType::Office => is_office(head),
            FileType::Hl7 => is_hl7(head),
            FileType::Fhir => is_fhir(head),
            FileType::Mysql => is_innodb(head) || head.starts_with(&[0xfe, 0xfe, 0x07, 0x01]),
            FileType::Postgresql => is_pg_page(head) || is_pg_wal(head),
        }
    }
}

/// The type of a file that starts with `head`, if any.
pub fn sniff(head: &[u8]) -> Option<FileType> {
    FileType::ALL.into_iter().find(|t| t.matches(head))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// OLE2, RTF, or a zip whose first entry is OOXML's content types or
/// OpenDocument's mimetype.
fn is_office(head: &[u8]) -> bool {
    if head.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])
        || head.starts_with(b"{\\rtf")
    {
        return true;
    }
    if !head.starts_with(b"PK\x03\x04") {
        return false;
    }
    let Some(name_len) = u16_le(head, 26) else {
        return false;
    };
    let Some(name) = head.get(30..30 + name_len as usize) else {
        return false;
    };
    if name == b"[Content_Types].xml"
        || name.starts_with(b"_rels/")
        || name.starts_with(b"docProps/")
        || name.starts_with(b"word/")
        || name.starts_with(b"xl/")
        || name.starts_with(b"ppt/")
    {
        return true;
    }
    // OpenDocument stores `mimetype` first, uncompressed, so its value
    // follows the name.
    name == b"mimetype"
        && head
            .get(30 + name_len as usize + u16_le(head, 28).unwrap_or(0) as usize..)
            .is_some_and(|rest| rest.starts_with(b"application/vnd.oasis.opendocument"))
}

/// An HL7 v2 header segment: `MSH|^~\&` and its kin (any separator), after
/// an optional MLLP start byte or byte order mark.
fn is_hl7(head: &[u8]) -> bool {
    let head = head
        .strip_prefix(&[0x0b])
        .or_else(|| head.strip_prefix(b"\xef\xbb\xbf"))
        .unwrap_or(head);
    let start = head.iter().position(|c| !c.is_ascii_whitespace());
    let head = &head[start.unwrap_or(head.len())..];
    let Some(seg) = head.get(..8) else {
        return false;
    };
    let field = seg[3];
    matches!(&seg[..3], b"MSH" | b"FHS" | b"BHS")
        && field.is_ascii_punctuation()
        && seg[4..8]
            .iter()
            .all(|&c| c.is_ascii_punctuation() && c != field)
}

/// JSON with a `resourceType`, or XML that declares FHIR's namespace
/// (by default or with a prefix, in either quotes).
fn is_fhir(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let first = text.iter().find(|c| !c.is_ascii_whitespace());
    match first {
        Some(b'{') => find(text, b"\"resourceType\"").is_some(),
        Some(b'<') => {
            find(text, b"\"http://hl7.org/fhir\"").is_some()
                || find(text, b"'http://hl7.org/fhir'").is_some()
        }
        _ => false,
    }
}

/// The first page of an InnoDB tablespace: page number 0, type FSP_HDR,
/// and the space id written twice (the file header and the space header).
fn is_innodb(head: &[u8]) -> bool {
    const FIL_PAGE_TYPE_FSP_HDR: u16 = 8;
    head.len() >= 50
        && head[4..8] == [0, 0, 0, 0]
        && u16_be(head, 24) == Some(FIL_PAGE_TYPE_FSP_HDR)
        && head[34..38] == head[38..42]
}

/// A PostgreSQL page header: 8 KiB pages of layout version 4, and the
/// free-space pointers in order within the page.
fn is_pg_page(head: &[u8]) -> bool {
    const PAGE: u16 = 8192;
    let (Some(lower), Some(upper), Some(special), Some(size_version)) = (
        u16_le(head, 12),
        u16_le(head, 14),
        u16_le(head, 16),
        u16_le(head, 18),
    ) else {
        return false;
    };
    size_version == PAGE | 4 && 24 <= lower && lower <= upper && upper <= special && special <= PAGE
}

/// A write-ahead log segment: its first page's magic (0xD1xx, by server
/// version), the long-header flag, and the long header's segment size (a
/// power of two from 1 MiB to 1 GiB, which the segment's address is a
/// multiple of) and block size (8 KiB).
fn is_pg_wal(head: &[u8]) -> bool {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let u32_le = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let (Some(magic), Some(info), Some(seg), Some(block)) =
        (u16_le(head, 0), u16_le(head, 2), u32_le(32), u32_le(36))
    else {
        return false;
    };
    let addr = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    magic & 0xff00 == 0xd100
        && info & XLP_LONG_HEADER != 0
        && block == 8192
        && seg.is_power_of_two()
        && (1 << 20..=1 << 30).contains(&seg)
        && addr % u64::from(seg) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_too_short_or_plain_is_no_type() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"MSH"), None);
        assert_eq!(sniff(b"hello, world\n"), None);
        assert_eq!(sniff(&[0u8; 8192]), None);
        assert_eq!(sniff(b"{\"name\": \"not fhir\"}"), None);
    }

    #[test]
    fn hl7_needs_its_encoding_characters() {
        assert_eq!(sniff(b"MSH|^~\\&|LAB|HOSP|"), Some(FileType::Hl7));
        assert_eq!(sniff(b"\x0bMSH|^~\\&|LAB|"), Some(FileType::Hl7));
        assert_eq!(sniff(b"MSH is a word here"), None);
        assert_eq!(sniff(b"\r\nMSH|^~\\&|LAB|"), Some(FileType::Hl7));
    }

    #[test]
    fn fhir_xml_is_told_by_its_namespace_however_declared() {
        let cases: [&[u8]; 3] = [
            b"<Patient xmlns=\"http://hl7.org/fhir\"/>",
            b"<Patient xmlns='http://hl7.org/fhir'/>",
            b"<f:Patient xmlns:f=\"http://hl7.org/fhir\"/>",
        ];
        for c in cases {
            assert_eq!(sniff(c), Some(FileType::Fhir));
        }
    }

    #[test]
    fn a_pg_wal_segment_needs_its_long_header() {
        let mut page = vec![0u8; 8192];
        page[0..2].copy_from_slice(&0xd116u16.to_le_bytes());
        page[2..4].copy_from_slice(&2u16.to_le_bytes());
        page[8..16].copy_from_slice(&(3u64 << 24).to_le_bytes());
        page[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        page[36..40].copy_from_slice(&8192u32.to_le_bytes());
        assert_eq!(sniff(&page), Some(FileType::Postgresql));
        page[36..40].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(sniff(&page), None);
    }

    #[test]
    fn a_pg_page_needs_ordered_pointers() {
        let mut page = vec![0u8; 8192];
        page[12..14].copy_from_slice(&40u16.to_le_bytes());
        page[14..16].copy_from_slice(&8000u16.to_le_bytes());
        page[16..18].copy_from_slice(&8192u16.to_le_bytes());
        page[18..20].copy_from_slice(&(8192u16 | 4).to_le_bytes());
        assert_eq!(sniff(&page), Some(FileType::Postgresql));
        page[14..16].copy_from_slice(&20u16.to_le_bytes());
        assert_eq!(sniff(&page), None);
    }
}
