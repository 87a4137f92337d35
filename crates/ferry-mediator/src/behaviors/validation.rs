//! Validation of requests before their handler runs.

use std::fmt;

use crate::{MediatorError, Request, RequestBehavior, RequestContext, RequestNext};

/// A request that can check itself.
///
/// ```
/// use ferry_mediator::{Validate, ValidationErrors};
///
/// struct CreateOrder { customer_email: String, items: Vec<(String, u32)> }
///
/// impl Validate for CreateOrder {
///     fn validate(&self) -> Result<(), ValidationErrors> {
///         let mut errors = ValidationErrors::new();
///         errors.ensure(self.customer_email.contains('@'), "customer_email", "must be an e-mail address");
///         errors.ensure(!self.items.is_empty(), "items", "must not be empty");
///         errors.into_result()
///     }
/// }
///
/// let invalid = CreateOrder { customer_email: "nobody".into(), items: vec![] };
/// assert_eq!(invalid.validate().unwrap_err().len(), 2);
/// ```
pub trait Validate {
    /// `Ok` when the request is valid; otherwise what is wrong with it.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (or `""` for the request as a whole).
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// Everything wrong with a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records that `field` is wrong unless `condition` holds.
    pub fn ensure(
        &mut self,
        condition: bool,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        if !condition {
            self.add(field, message);
        }
    }

    /// [`add`](Self::add), by value.
    pub fn with(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.add(field, message);
        self
    }

    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many things are wrong.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Each thing wrong.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.errors.iter()
    }

    /// Whether `field` is among the wrong ones.
    pub fn has(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// `Ok` when nothing is wrong, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("no errors");
        }
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if error.field.is_empty() {
                f.write_str(&error.message)?;
            } else {
                write!(f, "{}: {}", error.field, error.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Runs [`Validate::validate`] on each request of its type; an invalid one gets
/// [`MediatorError::Validation`] and goes no further. Register it with
/// [`MediatorBuilder::validate`](crate::MediatorBuilder::validate)`::<R>()`, or
/// `.behavior_for::<R, _>(ValidationBehavior)` — per type, because a generic behavior cannot
/// know whether an erased request implements `Validate`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationBehavior;

impl<R: Request + Validate> RequestBehavior<R> for ValidationBehavior {
    async fn handle(
        &self,
        request: R,
        ctx: RequestContext,
        next: RequestNext<R>,
    ) -> Result<R::Output, MediatorError> {
        if let Err(errors) = request.validate() {
            return Err(MediatorError::Validation {
                request: next.info().type_name,
                errors,
            });
        }
        next.run(request, ctx).await
    }
}
