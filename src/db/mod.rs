//! Database access, below every stage that moves data: connecting like psql ([`connect`]),
//! reading the catalog ([`catalog`], and [`shape`] for `generate`), checking privileges ([`privileges`]), deciding which
//! failures are worth another try ([`retry`]), and the run ledger ([`ledger`]). Nothing here
//! knows about CSV, COPY payloads or the commands.

pub mod catalog;
pub mod connect;
pub mod ledger;
pub mod privileges;
pub mod retry;
pub mod shape;
