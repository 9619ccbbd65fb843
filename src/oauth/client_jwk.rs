//! `gatehouse client-jwk [--set]`: prints the public JWK of `PROVIDER__CLIENT_KEY_FILE` (with
//! `kid`, `use: sig`, `alg`) on one line, to register at the provider for `private_key_jwt`;
//! `--set` wraps it in a JWK Set (`{"keys": [...]}`), as some providers take it.

use crate::config::{load_client_key, Sources};

/// Exit status for a settings problem, as for the server.
const EXIT_CONFIG: i32 = 2;

/// Runs the command with the arguments after `client-jwk`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let set = match args {
        [] => false,
        [flag] if flag == "--set" => true,
        _ => {
            eprintln!("gatehouse client-jwk: usage: gatehouse client-jwk [--set]");
            return EXIT_CONFIG;
        }
    };
    match load_client_key(Sources::from_process()) {
        Ok(key) => {
            let jwk = key.public_jwk();
            if set {
                println!("{}", serde_json::json!({ "keys": [jwk] }));
            } else {
                println!("{jwk}");
            }
            0
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            EXIT_CONFIG
        }
    }
}
