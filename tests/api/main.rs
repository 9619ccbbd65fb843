//! One integration-test binary (faster to link than many). Modules by concern.

mod helpers;

mod access_and_keys;
mod binary;
mod browser;
mod concurrency;
mod discovery;
mod docs;
mod errors;
mod exchange_faults;
mod faults;
mod health;
mod hostile;
mod id_tokens;
mod log_delivery;
mod logs;
mod metrics;
mod nginx;
mod pages;
mod proxy;
mod redis_modes;
mod refresh;
mod security;
mod settings;
mod signin_e2e;
