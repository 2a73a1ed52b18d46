//! Input: where rows come from ([`source`]), how they split into records with COPY's own CSV
//! rules ([`csv`]), which of them the server would certainly refuse ([`check`]), and where
//! refused rows go in reject mode ([`rejects`]).

pub mod check;
pub mod csv;
pub mod rejects;
pub mod source;
