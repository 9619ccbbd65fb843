//! One integration-test binary (faster to link than many). Modules by concern.

mod helpers;

mod concurrency;
mod logs;
mod security;
mod signin_e2e;
