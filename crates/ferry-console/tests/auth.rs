//! Secure by default, each refusal tested against a real server: no token means loopback only
//! (and loopback hosts only); with tokens every request but /healthz needs credentials; the
//! sign-in form sets an HttpOnly, SameSite=Strict cookie; actions with the cookie need the CSRF
//! token; the read token may not act; no token appears in a page.

mod support;

use ferry_console::{Console, ConsoleError, ConsoleOptions};
use ferry_sql::sqlite::Sqlite;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn insecure_configurations_are_refused() {
    let (_file, pool) = sqlite().await;
    let open_wide = ConsoleOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..ConsoleOptions::default()
    };
    assert!(matches!(
        Console::<Sqlite>::new(pool.clone(), None, open_wide),
        Err(ConsoleError::InsecureListen(_))
    ));
    let read_only = ConsoleOptions {
        read_token: Some("r".into()),
        ..ConsoleOptions::default()
    };
    assert!(matches!(
        Console::<Sqlite>::new(pool.clone(), None, read_only),
        Err(ConsoleError::ReadTokenWithoutToken)
    ));
    let empty = ConsoleOptions {
        token: Some(String::new()),
        ..ConsoleOptions::default()
    };
    assert!(matches!(
        Console::<Sqlite>::new(pool.clone(), None, empty),
        Err(ConsoleError::EmptyToken)
    ));
    // With a token, any address is allowed.
    let with_token = ConsoleOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        token: Some("t".into()),
        ..ConsoleOptions::default()
    };
    assert!(Console::<Sqlite>::new(pool, None, with_token).is_ok());
    // The options never show a token.
    let shown = format!(
        "{:?}",
        ConsoleOptions {
            token: Some(TOKEN.into()),
            ..ConsoleOptions::default()
        }
    );
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn without_a_token_it_answers_loopback_hosts_only() {
    let (_file, pool) = sqlite().await;
    let console = start::<Sqlite>(pool, None, None, None, vec![]).await;
    let c = client();
    let ok = c
        .get(format!("{}/api/overview", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // A page elsewhere reaching it through a name that resolves to 127.0.0.1.
    let rebound = c
        .get(format!("{}/api/overview", console.base))
        .header(header::HOST, "evil.example:8470")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    // Cross-origin actions are refused.
    let cross = c
        .post(format!("{}/api/dead-letters/delete", console.base))
        .header(header::ORIGIN, "http://evil.example")
        .json(&json!({"ids": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Without a broker a replay says so.
    let replay = c
        .post(format!("{}/api/dead-letters/replay", console.base))
        .json(&json!({"ids": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SERVICE_UNAVAILABLE);
}

fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .expect("a cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_sign_in_form_sets_a_cookie_and_actions_need_the_csrf_token() {
    let (_file, pool) = sqlite().await;
    let console = start::<Sqlite>(pool, None, Some(TOKEN), Some(READ_TOKEN), vec![]).await;
    let c = client();
    let url = |path: &str| format!("{}{path}", console.base);

    // The page without credentials: 401 with the sign-in form, which names no token.
    let page = c.get(url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    let html = page.text().await.unwrap();
    assert!(html.contains("action=\"/sign-in\""), "{html}");
    assert!(!html.contains(TOKEN) && !html.contains(READ_TOKEN));
    assert_eq!(
        c.get(url("/assets/app.js")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A wrong token: 401, no cookie.
    let wrong = c
        .post(url("/sign-in"))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    // The read token: a cookie that may read, not act.
    let signed = c
        .post(url("/sign-in"))
        .form(&[("token", READ_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let reader = session_cookie(&signed);
    assert!(!reader.contains(READ_TOKEN), "the cookie is not the token");
    let page = c
        .get(url("/"))
        .header(header::COOKIE, &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let body = page.text().await.unwrap();
    assert!(!body.contains(TOKEN) && !body.contains(READ_TOKEN));
    let session: Value = c
        .get(url("/api/session"))
        .header(header::COOKIE, &reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["role"], "read");
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    let acted = c
        .post(url("/api/dead-letters/delete"))
        .header(header::COOKIE, &reader)
        .header("x-csrf-token", &csrf)
        .json(&json!({"ids": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(acted.status(), StatusCode::FORBIDDEN);

    // The operator token: actions need the session's CSRF token.
    let signed = c
        .post(url("/sign-in"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let operator = session_cookie(&signed);
    let delete = |csrf: Option<String>| {
        let mut request = c
            .post(url("/api/dead-letters/delete"))
            .header(header::COOKIE, &operator)
            .json(&json!({"ids": ["no-such-row"]}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(delete(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        delete(Some(csrf.clone())).await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "another session's CSRF token"
    );
    let session: Value = c
        .get(url("/api/session"))
        .header(header::COOKIE, &operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["role"], "operator");
    let own = session["csrf"].as_str().unwrap().to_owned();
    let done = delete(Some(own)).await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.json::<Value>().await.unwrap(), json!({"deleted": 0}));

    // Signing out ends the session.
    c.post(url("/sign-out"))
        .header(header::COOKIE, &operator)
        .send()
        .await
        .unwrap();
    let after = c
        .get(url("/api/overview"))
        .header(header::COOKIE, &operator)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // /healthz stays open.
    assert_eq!(
        c.get(url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
}
