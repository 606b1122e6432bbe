//! Child processes of a bench spoken to in lines: a command on each one's standard input, an
//! answer read from its standard output; each ends when its input closes.

use anyhow::Context;

/// The children, in the order started.
pub(super) struct Children {
    children: Vec<Child>,
}

struct Child {
    process: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Children {
    /// `count` runs of this binary, the `i`-th with arguments `args(i)`.
    pub(super) fn start(
        count: usize,
        what: &str,
        args: impl Fn(usize) -> Vec<String>,
    ) -> anyhow::Result<Self> {
        let children = (0..count)
            .map(|i| {
                let mut process = std::process::Command::new(std::env::current_exe()?)
                    .args(args(i))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {what} {i}"))?;
                let out = process.stdout.take().context("a child's output")?;
                Ok(Child {
                    process,
                    out: std::io::BufReader::new(out),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { children })
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.children.len()
    }

    /// Their process ids.
    pub(super) fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().map(|c| c.process.id())
    }

    /// Sends the `i`-th child the line `says(i)`, to each before any answers (so they work
    /// side by side).
    pub(super) fn say(&mut self, says: impl Fn(usize) -> String) -> anyhow::Result<()> {
        use std::io::Write;
        for (i, child) in self.children.iter_mut().enumerate() {
            let stdin = child.process.stdin.as_mut().context("a child's input")?;
            writeln!(stdin, "{}", says(i))?;
            stdin.flush()?;
        }
        Ok(())
    }

    /// The next line each child writes, trimmed, in order.
    pub(super) fn answers(&mut self) -> anyhow::Result<Vec<String>> {
        use std::io::BufRead;
        self.children
            .iter_mut()
            .map(|child| {
                let mut answer = String::new();
                child.out.read_line(&mut answer)?;
                Ok(answer.trim().to_string())
            })
            .collect()
    }

    /// Closes their inputs and waits for them to end.
    pub(super) fn stop(mut self) {
        for child in &mut self.children {
            drop(child.process.stdin.take());
        }
        for child in &mut self.children {
            let _ = child.process.wait();
        }
    }
}
