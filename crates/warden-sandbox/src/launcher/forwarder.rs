//! The egress forwarder (`network = { allow = [..] }`): a process of the sandbox, forked by
//! init inside the new network namespace before the server's restrictions, that listens on
//! `127.0.0.1:<port>` (the sandbox's own loopback) and relays each TCP connection to the
//! gateway's proxy on a Unix socket. The proxy decides what is reached; the forwarder only
//! moves bytes.
//!
//! Why a process of its own: the server's seccomp filter denies `socket(AF_UNIX)`, and the
//! server's Landlock domain would (from ABI 9) cover connecting to a named socket; the
//! forwarder is forked before either, so the server keeps both restrictions. The forwarder
//! itself gets a parent-death signal, stdin and stdout on `/dev/null`, no capabilities,
//! `no_new_privs` and the same seccomp filter with Unix sockets allowed; it is outside the
//! server's Landlock domain, so the server (scoped) cannot signal it, and `ptrace` is denied.
//! It dies with init, like every process of the PID namespace.

use std::io;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::sys::{self, Failure};
use super::{caps, seccomp};
use crate::profile::Seccomp;

/// Connections relayed at once; more are closed at once (the proxy bounds tunnels too).
const MAX_CONNECTIONS: usize = 64;
/// Stack of each relay thread: they only copy through a small buffer.
const STACK_BYTES: usize = 64 * 1024;

/// Listens on `127.0.0.1:0` in the current (new) network namespace, forks the forwarder and
/// returns the port. Must run in init, after loopback is up and before the server's
/// restrictions.
pub(crate) fn start(socket: &Path) -> Result<u16, Failure> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Failure::os("egress forwarder listen", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::os("egress forwarder address", e))?
        .port();
    match sys::fork()? {
        sys::Forked::Child => {
            let code = run(listener, socket.to_owned());
            sys::exit_now(code)
        }
        // The listener closes here in init: only the forwarder holds it.
        sys::Forked::Parent(_) => Ok(port),
    }
}

fn run(listener: TcpListener, socket: PathBuf) -> i32 {
    let restricted = sys::set_parent_death_signal()
        .and_then(|()| sys::detach_stdio())
        .and_then(|()| caps::drop_bounding_and_ambient())
        .and_then(|()| sys::set_no_new_privs())
        .and_then(|()| caps::clear_sets())
        .and_then(|()| {
            seccomp::install(&Seccomp {
                allow_unix_sockets: true,
            })
            .map(|_| ())
        });
    if let Err(failure) = restricted {
        let _ = writeln!(
            io::stderr(),
            "mcp-warden sandbox: egress forwarder: {failure}"
        );
        return super::EXIT_SETUP_FAILED;
    }
    let socket: Arc<Path> = socket.into();
    let active = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        let (socket, done) = (Arc::clone(&socket), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || {
                relay(client, &socket);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    0
}

/// Copies both ways. When the proxy side ends (the target closed, the proxy refused or timed
/// the tunnel out), the client's socket is shut down both ways, which also ends the other
/// direction's blocked read: no thread outlives its connection.
fn relay(client: TcpStream, socket: &Path) {
    let Ok(proxy) = UnixStream::connect(socket) else {
        return;
    };
    let (Ok(client_in), Ok(proxy_out)) = (client.try_clone(), proxy.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let _ = io::copy(&mut &client_in, &mut &proxy_out);
            let _ = proxy_out.shutdown(Shutdown::Write);
        });
    let _ = io::copy(&mut &proxy, &mut &client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = proxy.shutdown(Shutdown::Both);
    if let Ok(up) = up {
        let _ = up.join();
    }
}
