//! Conformance and behaviour tests: a live server on 127.0.0.1, real TCP
//! upstreams, real clients.

mod api;
mod beyond;
mod clients;
mod decode;
mod support;
mod toxics;
mod udp;
mod zerocopy;
