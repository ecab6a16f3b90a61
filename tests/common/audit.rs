//! Tampering with the audit log as someone who holds the files and the key.

use strata::tree::audit::{chain_hash, open_row, sealed_rows, Audit, AuditRecord};
use strata::tree::head::txn::Reader;
use strata::tree::head::Head;

/// Rewrites every record (the first's uid changed), chains each to the
/// edited one before it and seals rows and head again, in one transaction
/// made durable: a log that holds together by itself. Returns the new
/// chain hashes by number (index 0: the empty log's).
pub fn rewrite_log(head: &Head) -> Vec<[u8; 32]> {
    let rows = Audit::of(head).rows().unwrap();
    let mut hashes = vec![[0u8; 32]];
    let serial = head.serial();
    serial
        .transact(|w| {
            for (n, sealed) in rows.iter().filter(|(n, _)| *n > 0) {
                let body = open_row(w.sealer(), *n, sealed)?;
                let mut rec = AuditRecord::decode(&body).unwrap();
                if *n == 1 {
                    rec.uid = 4242;
                }
                rec.prev = hex::encode(hashes.last().unwrap());
                let edited = serde_json::to_vec(&rec).unwrap();
                hashes.push(chain_hash(&edited));
                for (k, v) in sealed_rows(w.sealer(), *n, &edited) {
                    w.audit_mut()?
                        .insert(k, v.as_slice())
                        .map_err(strata::tree::head::records::db)?;
                }
            }
            Ok(())
        })
        .unwrap();
    serial.commit().unwrap();
    hashes
}
