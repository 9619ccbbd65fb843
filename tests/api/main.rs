//! One integration-test binary (faster to link than many). Modules by concern.

mod helpers;

mod binary;
mod concurrency;
mod docs;
mod errors;
mod exchange_faults;
mod health;
mod logs;
mod security;
mod settings;
mod signin_e2e;
