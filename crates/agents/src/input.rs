//! Where a user proxy gets human input: the terminal, or a script in tests.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::Mutex;

use crate::model::BoxFuture;

/// Why human input could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Reading the terminal failed.
    #[error("could not read human input from stdin: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking reader task failed.
    #[error("the stdin reader task failed: {0}")]
    Task(String),
}

/// A source of human replies for a [`crate::UserProxyAgent`].
pub trait InputProvider: Send + Sync {
    /// Shows `prompt` and returns the reply; `None` when no more input will
    /// come (end of file, script exhausted), which ends the conversation as
    /// `exit` does.
    fn read_line<'a>(
        &'a self,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InputError>>;
}

/// Reads replies from stdin, printing the prompt on stderr (stdout is for
/// the answer and may be piped).
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalInput;

impl InputProvider for TerminalInput {
    fn read_line<'a>(
        &'a self,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InputError>> {
        let prompt = prompt.to_string();
        Box::pin(async move {
            let read =
                tokio::task::spawn_blocking(move || -> Result<Option<String>, std::io::Error> {
                    let mut err = std::io::stderr().lock();
                    write!(err, "{prompt} ")?;
                    err.flush()?;
                    let mut line = String::new();
                    let n = std::io::stdin().lock().read_line(&mut line)?;
                    Ok((n > 0).then(|| line.trim_end_matches(['\r', '\n']).to_string()))
                })
                .await
                .map_err(|e| InputError::Task(e.to_string()))?;
            Ok(read?)
        })
    }
}

/// Replies from a fixed list, in order; records the prompts it was shown.
#[derive(Debug, Default)]
pub struct ScriptedInput {
    replies: Mutex<VecDeque<String>>,
    prompts: Mutex<Vec<String>>,
}

impl ScriptedInput {
    /// A script of replies.
    pub fn new<I, S>(replies: I) -> ScriptedInput
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ScriptedInput {
            replies: Mutex::new(replies.into_iter().map(Into::into).collect()),
            prompts: Mutex::new(Vec::new()),
        }
    }

    /// The prompts shown so far.
    pub fn prompts(&self) -> Vec<String> {
        self.prompts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replies not used yet.
    pub fn remaining(&self) -> usize {
        self.replies.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl InputProvider for ScriptedInput {
    fn read_line<'a>(
        &'a self,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InputError>> {
        self.prompts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(prompt.to_string());
        let next = self
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        Box::pin(std::future::ready(Ok(next)))
    }
}
