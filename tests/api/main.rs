//! One integration-test binary (faster to link than many). Modules by concern.

mod helpers;

mod access_and_keys;
mod assertion;
mod authorization;
mod bearer;
mod binary;
mod binding;
mod browser;
mod caddy;
mod cli;
mod concurrency;
mod discovery;
mod docs;
mod errors;
mod exchange_faults;
mod faults;
mod health;
mod hostile;
mod id_tokens;
mod logs;
mod metrics;
mod nginx;
mod pages;
mod providers;
mod proxy;
mod redis_modes;
mod refresh;
mod refresh_real;
mod security;
mod session_record;
mod sessions;
mod settings;
mod several_providers;
mod signin_e2e;
mod signin_limits;
