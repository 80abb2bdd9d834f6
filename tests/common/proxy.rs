//! A fault-injecting HTTP proxy between tierfs and the S3 server, on loopback.
//!
//! Every `every`-th request meets the current fault: a connection reset, a stall, extra latency,
//! an error status (500, 503 with S3's XML), or a response body cut short. The rest pass
//! through untouched. One upstream connection per request keeps the proxy simple.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Reset,
    Stall(Duration),
    Latency(Duration),
    Status(u16),
    Truncate,
    /// Not a fault but a dialect: CreateMultipartUpload answers get gofakes3's root element
    /// name (`InitiateMultipartUpload`, as `rclone serve s3` sends), on every matching request.
    GofakeS3Multipart,
}

pub struct FaultProxy {
    pub port: u16,
    fault: Arc<Mutex<(Fault, u64)>>,
    pub requests: Arc<AtomicU64>,
    pub faults: Arc<AtomicU64>,
}

struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

fn read_message(reader: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if text.contains("transfer-encoding: chunked") {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).ok()?;
            body.extend_from_slice(&size_line);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&size_line)
                    .trim()
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    }
    Some(Message { head, body })
}

fn is_head_request(head: &[u8]) -> bool {
    head.starts_with(b"HEAD ")
}

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = upstream.trim_start_matches("http://").to_string();
        let fault = Arc::new(Mutex::new((Fault::None, 1)));
        let (requests, faults) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (f, r, n) = (
            Arc::clone(&fault),
            Arc::clone(&requests),
            Arc::clone(&faults),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, f, r, n) = (
                    upstream.clone(),
                    Arc::clone(&f),
                    Arc::clone(&r),
                    Arc::clone(&n),
                );
                std::thread::spawn(move || serve(client, &upstream, &f, &r, &n));
            }
        });
        Self {
            port,
            fault,
            requests,
            faults,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to every `every`-th request from now on.
    pub fn set(&self, fault: Fault, every: u64) {
        *self.fault.lock().unwrap() = (fault, every.max(1));
    }
}

fn serve(
    client: TcpStream,
    upstream: &str,
    fault: &Mutex<(Fault, u64)>,
    requests: &AtomicU64,
    faults: &AtomicU64,
) {
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    while let Some(request) = read_message(&mut reader) {
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let (mode, every) = *fault.lock().unwrap();
        let hit = mode != Fault::None && n % every == 0;
        if hit {
            faults.fetch_add(1, Ordering::SeqCst);
        }
        match (hit, mode) {
            (true, Fault::Reset) => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            (true, Fault::Stall(d)) => {
                std::thread::sleep(d);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            (true, Fault::Latency(d)) => std::thread::sleep(d),
            (true, Fault::Status(code)) => {
                let (name, text) = if code == 503 {
                    ("SlowDown", "Service Unavailable")
                } else {
                    ("InternalError", "Internal Server Error")
                };
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{name}</Code><Message>injected {code}</Message></Error>"
                );
                let response = format!(
                    "HTTP/1.1 {code} {text}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        let Ok(upstream_conn) = TcpStream::connect(upstream) else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        upstream_conn
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut up_writer = upstream_conn.try_clone().unwrap();
        if up_writer
            .write_all(&request.head)
            .and_then(|_| up_writer.write_all(&request.body))
            .is_err()
        {
            return;
        }
        let mut up_reader = BufReader::new(upstream_conn);
        let response = if is_head_request(&request.head) {
            read_head_only(&mut up_reader)
        } else {
            read_message(&mut up_reader)
        };
        let Some(response) = response else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        let response = if mode == Fault::GofakeS3Multipart {
            gofakes3_multipart(response)
        } else {
            response
        };
        if hit && mode == Fault::Truncate && response.body.len() > 1 {
            let _ = writer.write_all(&response.head);
            let _ = writer.write_all(&response.body[..response.body.len() / 2]);
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        if writer
            .write_all(&response.head)
            .and_then(|_| writer.write_all(&response.body))
            .is_err()
        {
            return;
        }
    }
}

/// Renames the root element of a CreateMultipartUpload answer as gofakes3 names it, fixing the
/// Content-Length; other answers pass unchanged.
fn gofakes3_multipart(response: Message) -> Message {
    let body = String::from_utf8_lossy(&response.body);
    let head = String::from_utf8_lossy(&response.head);
    let Some(root) = body.find("<InitiateMultipartUploadResult") else {
        return response;
    };
    if !head.to_ascii_lowercase().contains("content-length:") {
        return response;
    }
    let open_end = root + body[root..].find('>').unwrap() + 1;
    let renamed = format!(
        "{}<InitiateMultipartUpload>{}",
        &body[..root],
        &body[open_end..]
    )
    .replace(
        "</InitiateMultipartUploadResult>",
        "</InitiateMultipartUpload>",
    );
    let head: String = head
        .split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", renamed.len())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    Message {
        head: head.into_bytes(),
        body: renamed.into_bytes(),
    }
}

fn read_head_only(reader: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            return Some(Message {
                head,
                body: Vec::new(),
            });
        }
    }
}
