//! One integration-test binary (faster to link than many). Modules by concern.

mod helpers;

mod signin_e2e;

mod binary;
mod errors;
mod exchange_faults;
mod health;
mod settings;
