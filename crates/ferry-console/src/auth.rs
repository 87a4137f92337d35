//! Who may do what: the operator token (read and act), the read token (read), or, without
//! tokens, anyone on a loopback host. Credentials are a bearer header or the session cookie
//! the sign-in form sets; actions made with the cookie also need the session's CSRF token.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

/// The session cookie's name.
const COOKIE: &str = "ferry_session";
/// The header carrying the CSRF token of a cookie session.
const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first): sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 1024;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Read only.
    Read,
    /// Read and act.
    Operator,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
        }
    }
}

struct Session {
    role: Role,
    csrf: String,
    expires: Instant,
}

/// The tokens and the signed-in sessions.
pub(crate) struct Auth {
    token: Option<String>,
    read_token: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// How a request was let in, for the handlers.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) role: Role,
    csrf: Option<String>,
}

fn same(a: &str, b: &str) -> bool {
    // Constant time in the contents (the length may show, as it does anyway on the wire).
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Auth {
    pub(crate) fn new(token: Option<String>, read_token: Option<String>) -> Self {
        Self {
            token,
            read_token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> bool {
        self.token.is_none()
    }

    fn role_of_token(&self, given: &str) -> Option<Role> {
        // Both comparisons always run, so the time does not say which token matched.
        let operator = self.token.as_deref().is_some_and(|t| same(t, given));
        let read = self.read_token.as_deref().is_some_and(|t| same(t, given));
        if operator {
            Some(Role::Operator)
        } else if read {
            Some(Role::Read)
        } else {
            None
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_session(&self, role: Role) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut sessions = self.sessions();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                role,
                csrf: uuid::Uuid::new_v4().simple().to_string(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn session(&self, id: &str) -> Option<Access> {
        let sessions = self.sessions();
        let session = sessions.get(id)?;
        (session.expires > Instant::now()).then(|| Access {
            role: session.role,
            csrf: Some(session.csrf.clone()),
        })
    }

    fn end_session(&self, id: &str) {
        self.sessions().remove(id);
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn host_of(value: &str) -> &str {
    // "127.0.0.1:8470" → "127.0.0.1", "[::1]:8470" → "[::1]", "localhost" → "localhost".
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host_of(host);
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a browser's `Origin` (when it sends one) is this console's own.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin_host.is_some() && origin_host == host
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferry console\""),
        );
    }
    response
}

/// Lets a request in with its [`Access`], or refuses it: 401 without valid credentials (the
/// UI's page gets the sign-in form), 403 for an action without the operator's rights or the
/// session's CSRF token, or from another origin.
pub(crate) async fn authenticate(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let acting = request.method() != Method::GET && request.method() != Method::HEAD;
    if acting && !same_origin(headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let access = if auth.open() {
        // Open on loopback: a page elsewhere must not reach it through a name that resolves
        // to 127.0.0.1 (DNS rebinding).
        if !loopback_host(headers) {
            return refuse(
                StatusCode::FORBIDDEN,
                "without a token the console answers requests to a loopback host only",
            );
        }
        Access {
            role: Role::Operator,
            csrf: None,
        }
    } else if let Some(given) = bearer(headers) {
        match auth.role_of_token(given) {
            Some(role) => Access { role, csrf: None },
            None => return refuse(StatusCode::UNAUTHORIZED, "wrong token"),
        }
    } else if let Some(access) = cookie(headers).and_then(|id| auth.session(&id)) {
        if acting {
            let sent = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok());
            let expected = access.csrf.as_deref().unwrap_or_default();
            if !sent.is_some_and(|sent| same(sent, expected)) {
                return refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
            }
        }
        access
    } else if request.uri().path() == "/" {
        return (
            StatusCode::UNAUTHORIZED,
            crate::ui::sign_in_headers(),
            Html(crate::ui::sign_in_html(None)),
        )
            .into_response();
    } else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "credentials needed: Authorization: Bearer <token>, or sign in at /sign-in",
        );
    };
    if acting && access.role != Role::Operator {
        return refuse(StatusCode::FORBIDDEN, "the read token may not act");
    }
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// `GET /api/session`: the role, and the CSRF token actions made with the cookie send.
pub(crate) async fn session(
    axum::Extension(access): axum::Extension<Access>,
) -> Json<serde_json::Value> {
    Json(json!({ "role": access.role.as_str(), "csrf": access.csrf }))
}

/// `GET /sign-in`: the form (without tokens there is nothing to sign in to).
pub(crate) async fn sign_in_page(State(auth): State<Arc<Auth>>) -> Response {
    if auth.open() {
        return Redirect::to("/").into_response();
    }
    (
        crate::ui::sign_in_headers(),
        Html(crate::ui::sign_in_html(None)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

/// `POST /sign-in`: a token for a session cookie (HttpOnly, SameSite=Strict).
pub(crate) async fn sign_in(State(auth): State<Arc<Auth>>, Form(form): Form<SignIn>) -> Response {
    if auth.open() {
        return Redirect::to("/").into_response();
    }
    let Some(role) = auth.role_of_token(form.token.trim()) else {
        tracing::warn!("console sign-in with a wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            crate::ui::sign_in_headers(),
            Html(crate::ui::sign_in_html(Some("That token is not valid."))),
        )
            .into_response();
    };
    let id = auth.new_session(role);
    tracing::info!(role = role.as_str(), "console sign-in");
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /sign-out`: ends the session and clears the cookie.
pub(crate) async fn sign_out(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        auth.end_session(&id);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ferry_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}
