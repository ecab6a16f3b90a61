//! An error shown with its causes, as one line.

use std::error::Error;
use std::fmt;

/// Shows an error and each of its sources, joined with ": ", as anyhow's
/// `{:#}` does for the binaries. A cause whose text the line already holds
/// is not repeated: some errors quote their source in their own message
/// and return it as their source too (trailing whitespace aside, as for a
/// TOML error, whose text ends in a newline).
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !line.contains(text.trim_end()) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = c.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("reading the answer")]
        Apart(#[source] std::io::Error),
        #[error("reading the answer: {0}")]
        Quoted(#[source] std::io::Error),
        #[error("reading the answer: {}", .0.to_string().trim_end())]
        Trimmed(#[source] std::io::Error),
    }

    #[test]
    fn causes_follow_the_message_once() {
        let io = || std::io::Error::other("the pipe broke");
        assert_eq!(
            Chain(&Outer::Apart(io())).to_string(),
            "reading the answer: the pipe broke"
        );
        assert_eq!(
            Chain(&Outer::Quoted(io())).to_string(),
            "reading the answer: the pipe broke"
        );
        assert_eq!(
            Chain(&Outer::Trimmed(std::io::Error::other("the pipe broke\n"))).to_string(),
            "reading the answer: the pipe broke"
        );
    }
}
