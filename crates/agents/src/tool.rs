//! Tools: what a model may ask the runtime to run.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{BoxFuture, ToolSpec};
use crate::schema::{Violation, validate};

/// Why a tool call did not produce a result. Both become a `tool_error`
/// record and a tool message to the model; neither stops the conversation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments do not fit the tool.
    #[error("invalid arguments for tool `{tool}`: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// The model asked for a tool the agent does not offer.
    #[error("unknown tool `{tool}`: the agent offers no tool by that name")]
    UnknownTool {
        /// The name asked for.
        tool: String,
    },
    /// The tool ran and failed.
    #[error("tool `{tool}` failed: {message}")]
    Failed {
        /// The tool.
        tool: String,
        /// What went wrong.
        message: String,
    },
}

impl ToolError {
    /// `invalid_arguments`, `unknown_tool` or `failed`, as written in `tool_error` records.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments { .. } => "invalid_arguments",
            ToolError::UnknownTool { .. } => "unknown_tool",
            ToolError::Failed { .. } => "failed",
        }
    }
}

/// A tool: name, description, JSON Schema of its arguments, and an async call.
///
/// The runtime validates the arguments against [`Tool::parameters`] before
/// [`Tool::call`] and records the call durably before running it, so an
/// implementation may assume its arguments fit the schema.
pub trait Tool: Send + Sync {
    /// The name the model calls it by (`^[a-zA-Z0-9_-]{1,64}$` for OpenAI).
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of the arguments object.
    fn parameters(&self) -> &Value;
    /// Runs the tool.
    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, ToolError>>;

    /// The tool as offered to the model.
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_string(),
            description: self.description().to_string(),
            parameters: self.parameters().clone(),
        }
    }

    /// Checks arguments against the schema.
    fn validate(&self, arguments: &Value) -> Result<(), Vec<Violation>> {
        let violations = validate(self.parameters(), arguments);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// The JSON Schema of `T` as tools use it: inlined (no `$ref`, which some
/// servers reject), without `$schema` and `title`.
pub fn schema_for<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
        // An argument object with no fields still needs an object schema.
        map.entry("type")
            .or_insert_with(|| Value::String("object".into()));
    }
    value
}

/// A typed tool from an async function: the schema is derived from the
/// argument type `A` (with `schemars`), the arguments are deserialised into
/// `A`, and the output is serialised to JSON.
///
/// ```
/// use agent_audit_agents::{FnTool, Tool};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args {
///     /// The city.
///     city: String,
/// }
/// let tool = FnTool::new("get_weather", "Current weather of a city", |a: Args| async move {
///     Ok::<_, String>(serde_json::json!({"city": a.city, "temp_c": 21}))
/// });
/// assert_eq!(tool.parameters()["required"], serde_json::json!(["city"]));
/// ```
pub struct FnTool<A, F> {
    name: String,
    description: String,
    parameters: Value,
    f: F,
    _args: PhantomData<fn(A)>,
}

impl<A, F> std::fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool").field("name", &self.name).finish()
    }
}

// Only what `new` needs (the schema, and the closure's argument type to
// infer `A` from); `into_arc` asks for the rest through `Tool`.
impl<A, F, Fut> FnTool<A, F>
where
    A: JsonSchema,
    F: Fn(A) -> Fut,
{
    /// A tool named `name` running `f`.
    pub fn new(name: impl Into<String>, description: impl Into<String>, f: F) -> FnTool<A, F> {
        FnTool {
            name: name.into(),
            description: description.into(),
            parameters: schema_for::<A>(),
            f,
            _args: PhantomData,
        }
    }

    /// Boxes it for an agent's tool list.
    pub fn into_arc(self) -> Arc<dyn Tool>
    where
        Self: Tool + 'static,
    {
        Arc::new(self)
    }
}

impl<A, F, Fut, R, E> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Serialize,
    E: std::fmt::Display,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> &Value {
        &self.parameters
    }

    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, ToolError>> {
        let args = serde_json::from_value::<A>(arguments);
        Box::pin(async move {
            let args = args.map_err(|e| ToolError::InvalidArguments {
                tool: self.name.clone(),
                message: e.to_string(),
            })?;
            let out = (self.f)(args).await.map_err(|e| ToolError::Failed {
                tool: self.name.clone(),
                message: e.to_string(),
            })?;
            serde_json::to_value(out).map_err(|e| ToolError::Failed {
                tool: self.name.clone(),
                message: format!("result could not be serialised: {e}"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Nested {
        id: String,
        kind: Kind,
        limit: Option<u32>,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Checking,
        Savings,
    }

    #[test]
    fn derived_schema_is_inlined_and_validates() {
        let s = schema_for::<Nested>();
        assert!(!s.to_string().contains("$ref"), "{s}");
        assert_eq!(s["type"], "object");
        assert!(validate(&s, &json!({"id": "1", "kind": "savings"})).is_empty());
        assert!(validate(&s, &json!({"id": "1", "kind": "savings", "limit": null})).is_empty());
        assert_eq!(validate(&s, &json!({"id": "1", "kind": "gold"})).len(), 1);
        assert_eq!(
            validate(&s, &json!({"id": "1", "kind": "savings", "limit": -1})).len(),
            1
        );
    }
}
