//! Real Toxiproxy clients from other projects drive our server:
//! toxiproxy-python (PyPI) and toxiproxy-node-client (npm), both installed by
//! .ci/install-proxy.sh.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; run .ci/install-proxy.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}); run .ci/install-proxy.sh if a module is missing\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{what}: {stdout}");
}

#[test]
fn toxiproxy_python_client() {
    let f = server();
    let up = echo_server();
    let admin = f.server.admin_addr();
    run(
        Command::new("python3")
            .arg(clients_dir().join("toxiproxy_python_test.py"))
            .arg(admin.ip().to_string())
            .arg(admin.port().to_string())
            .arg(up.to_string()),
        "toxiproxy-python",
    );
}

#[test]
fn toxiproxy_node_client() {
    let f = server();
    let up = echo_server();
    run(
        Command::new("node")
            .current_dir(clients_dir())
            .arg("toxiproxy_node_test.js")
            .arg(format!("http://{}", f.admin()))
            .arg(up.to_string()),
        "toxiproxy-node-client",
    );
}
