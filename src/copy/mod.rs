//! Rows on their way to the server: encoded for COPY in binary or CSV format ([`encode`]),
//! cut into fixed-size batches whose content the ledger can check on resume ([`batch`]),
//! and streamed by `COPY … FROM STDIN` ([`stream`]).

pub mod batch;
pub mod encode;
pub mod stream;
