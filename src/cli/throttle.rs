//! `strata throttle show|set|clear`: the running daemon's write throttle.

use anyhow::{bail, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::policy::throttle::rate::{format_bytes, parse_byte_limit, parse_ops_limit};
use strata::policy::throttle::{Limits, ThrottleStatus};

use super::args::{Global, ThrottleCommand};
use super::print;
use super::request;

pub fn run(g: &Global, c: &ThrottleCommand) -> Result<()> {
    let req = match c {
        ThrottleCommand::Show => Request::ThrottleShow,
        ThrottleCommand::Set {
            rate,
            ops,
            duration,
        } => Request::ThrottleSet {
            limits: Limits {
                bytes: parse_byte_limit(rate).map_err(|e| usage(format!("rate: {e}")))?,
                ops: ops
                    .as_deref()
                    .map(|o| parse_ops_limit(o).map_err(|e| usage(format!("--ops: {e}"))))
                    .transpose()?
                    .flatten(),
            },
            seconds: duration.map(|d| d.as_secs().max(1)),
        },
        ThrottleCommand::Clear => Request::ThrottleClear,
    };
    let Reply::Throttle(s) = request(g, &req)? else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &s, || describe(&s));
    Ok(())
}

/// A value that does not parse is wrong usage (exit 2), as clap's own are.
fn usage(message: String) -> anyhow::Error {
    Reported(exit::USAGE, message).into()
}

/// The human form, also part of `strata status`.
pub fn describe(s: &ThrottleStatus) -> String {
    format!(
        "limit       {} ({})\nconfigured  {}\nachieved    {}/s, {:.0} writes/s (last {} s)\ndelayed     {} of {} writes, {:.1} s in all (at most {} ms each)",
        s.effective,
        s.reason,
        s.configured,
        format_bytes(s.achieved_bytes_per_sec),
        s.achieved_ops_per_sec,
        s.window.as_secs(),
        s.delayed_requests,
        s.requests,
        s.total_delay.as_secs_f64(),
        s.max_delay.as_millis()
    )
}
