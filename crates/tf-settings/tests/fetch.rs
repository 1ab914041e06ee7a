//! `fetch_connection_info` against tiny in-test HTTP servers on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tf_settings::{fetch_connection_info, ConnectionInfo, FetchOptions, InfoOrigin, SettingsError};

/// Requests as received, one string per connection.
type Seen = Arc<Mutex<Vec<String>>>;

/// Options for tests: no token unless asked, and a deadline that keeps a
/// broken test from hanging the suite.
fn opts(total: Duration) -> FetchOptions {
    FetchOptions {
        total_timeout: total,
        token_path: None,
        ..FetchOptions::default()
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Serves one canned answer per connection, in order, then stops.
fn serve(answers: Vec<Vec<u8>>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for answer in answers {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let request = read_request(&mut stream);
            log.lock().unwrap().push(request);
            let _ = stream.write_all(&answer);
            // Dropping the stream closes it, ending until-close bodies.
        }
    });
    (base, seen)
}

fn answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{headers}\r\n{body}").into_bytes()
}

fn with_length(status: &str, body: &str) -> Vec<u8> {
    answer(status, &format!("Content-Length: {}\r\n", body.len()), body)
}

#[test]
fn ok_with_content_length() {
    let (base, seen) = serve(vec![with_length(
        "200 OK",
        "native+10.1.2.3+42000+worker-1-77\n",
    )]);
    let url = format!("{base}/api/connection?name=a");
    let info = fetch_connection_info(&url, &opts(Duration::from_secs(10))).unwrap();
    assert_eq!(info.to_string(), "native+10.1.2.3+42000+worker-1-77");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    let host = base.trim_start_matches("http://");
    assert!(
        req.starts_with("GET /api/connection?name=a HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(req.contains(&format!("\r\nHost: {host}\r\n")), "{req}");
    assert!(req.contains("\r\nAccept: text/plain\r\n"), "{req}");
    assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    assert!(!req.contains("Authorization"), "{req}");
}

#[test]
fn ok_chunked() {
    let body = "5\r\nshmem\r\n7;x=y\r\n+/my_sh\r\n6\r\nm+64+0\r\n0\r\n\r\n";
    let (base, _) = serve(vec![answer(
        "200 OK",
        "Transfer-Encoding: chunked\r\n",
        body,
    )]);
    let info = fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap();
    assert_eq!(info.to_string(), "shmem+/my_shm+64+0");
    assert_eq!(
        info.shm_file_path().unwrap(),
        PathBuf::from("/dev/shm/my_shm")
    );
}

#[test]
fn ok_until_close() {
    let (base, _) = serve(vec![answer("200 OK", "", "native+::1+9+0\n")]);
    let info = fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap();
    assert_eq!(info.socket_address().unwrap(), "[::1]:9");
}

#[test]
fn retries_5xx_with_backoff() {
    let (base, seen) = serve(vec![
        with_length("503 Service Unavailable", "no worker yet"),
        with_length("502 Bad Gateway", ""),
        with_length("200 OK", "native+127.0.0.1+5000+0"),
    ]);
    let start = Instant::now();
    let info = fetch_connection_info(&base, &opts(Duration::from_secs(20))).unwrap();
    let waited = start.elapsed();
    assert_eq!(info.to_string(), "native+127.0.0.1+5000+0");
    assert_eq!(seen.lock().unwrap().len(), 3, "two retries");
    // 200 ms then 400 ms of backoff.
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn gives_up_on_5xx_at_the_deadline_naming_the_last_answer() {
    let answers = vec![with_length("503 Service Unavailable", "still scheduling"); 50];
    let (base, _) = serve(answers);
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(1))).unwrap_err();
    let SettingsError::GaveUp { attempts, last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*attempts >= 3, "{err}");
    assert!(last.starts_with("503 Service Unavailable"), "{last}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("gave up after {attempts} attempts in ")),
        "{msg}"
    );
    assert!(msg.contains("still scheduling"), "{msg}");
    assert!(msg.contains("TF_CONNECTION_URL_TIMEOUT"), "{msg}");
}

#[test]
fn not_found_fails_at_once() {
    let (base, seen) = serve(vec![with_length("404 Not Found", "no such connection")]);
    let url = format!("{base}/nope");
    let start = Instant::now();
    let err = fetch_connection_info(&url, &opts(Duration::from_secs(30))).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry");
    match &err {
        SettingsError::HttpStatus { status, url: u, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(u, &url);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("GET {url} answered 404 Not Found")),
        "{msg}"
    );
    assert!(msg.contains("no such connection"), "{msg}");
}

fn token_file(contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tf-settings-token-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn bearer_token_is_sent_when_the_file_exists() {
    let token = token_file("  eyJhbGciOi.token.sig\n");
    let (base, seen) = serve(vec![with_length("200 OK", "native+h+1+0")]);
    let o = FetchOptions {
        token_path: Some(token.clone()),
        ..opts(Duration::from_secs(10))
    };
    fetch_connection_info(&base, &o).unwrap();
    let req = seen.lock().unwrap()[0].clone();
    assert!(
        req.contains("\r\nAuthorization: Bearer eyJhbGciOi.token.sig\r\n"),
        "{req}"
    );
    std::fs::remove_file(token).unwrap();
}

#[test]
fn unauthorized_mentions_the_token() {
    let token = token_file("tok");
    let (base, _) = serve(vec![with_length("401 Unauthorized", "")]);
    let o = FetchOptions {
        token_path: Some(token.clone()),
        ..opts(Duration::from_secs(10))
    };
    let msg = fetch_connection_info(&base, &o).unwrap_err().to_string();
    assert!(msg.contains("401 Unauthorized"), "{msg}");
    assert!(
        msg.contains("bearer token") && msg.contains(&format!("{token:?}")),
        "{msg}"
    );
    std::fs::remove_file(token).unwrap();

    // Missing token file: no header, and the 403 says so.
    let (base, seen) = serve(vec![with_length("403 Forbidden", "")]);
    let o = FetchOptions {
        token_path: Some("/nonexistent/token".into()),
        ..opts(Duration::from_secs(10))
    };
    let msg = fetch_connection_info(&base, &o).unwrap_err().to_string();
    assert!(!seen.lock().unwrap()[0].contains("Authorization"));
    assert!(msg.contains("no bearer token was sent"), "{msg}");
    assert!(msg.contains("TF_SERVICE_ACCOUNT_TOKEN_PATH"), "{msg}");
}

#[test]
fn connection_refused_gives_up_at_the_deadline() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/conn");
    let start = Instant::now();
    let err = fetch_connection_info(&url, &opts(Duration::from_secs(1))).unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let SettingsError::GaveUp { attempts, last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*attempts >= 3, "{err}");
    assert!(last.contains("cannot connect"), "{last}");
}

#[test]
fn silent_server_does_not_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        // Accept and hold every connection without answering.
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
        }
    });
    let start = Instant::now();
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(1))).unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    let SettingsError::GaveUp { last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(last.contains("no answer within"), "{last}");
}

#[test]
fn trickling_server_cannot_outlast_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            thread::spawn(move || {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
                // One header byte every 50 ms, forever: each read succeeds.
                while s.write_all(b"X").is_ok() {
                    thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    let start = Instant::now();
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(1))).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, SettingsError::GaveUp { .. }), "{err:?}");
}

#[test]
fn bad_answers_fail_at_once() {
    let (base, _) = serve(vec![with_length("200 OK", "tcp+1.2.3.4+80+0")]);
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap_err();
    match &err {
        SettingsError::BadConnectionInfo { origin, .. } => {
            assert_eq!(origin, &InfoOrigin::Url(base.clone()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("unknown protocol \"tcp\" in the answer"));

    let (base, _) = serve(vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]);
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap_err();
    assert!(
        matches!(err, SettingsError::BadHttpResponse { .. }),
        "{err:?}"
    );

    let big = "a".repeat(64 * 1024 + 1);
    let (base, _) = serve(vec![answer("200 OK", "", &big)]);
    let err = fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap_err();
    assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
}

#[test]
fn https_is_refused_without_connecting() {
    let err = fetch_connection_info("https://127.0.0.1:1/conn", &opts(Duration::from_secs(10)))
        .unwrap_err();
    assert!(
        matches!(err, SettingsError::HttpsNotSupported { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("TLS is not supported"));
}

#[test]
fn result_is_a_connection_info() {
    // Type-level check that the public API composes: parse → display.
    let (base, _) = serve(vec![with_length("200 OK", "NATIVE+[fd00::2]+1+a+b")]);
    let info: ConnectionInfo =
        fetch_connection_info(&base, &opts(Duration::from_secs(10))).unwrap();
    assert_eq!(info.id(), "a+b");
    assert_eq!(info.to_string(), "native+fd00::2+1+a+b");
}
