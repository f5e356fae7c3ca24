//! The edge box's kernel programs, attached to the interface that receives
//! the ship's traffic:
//!
//! - [`xdp::seguro_xdp`] classifies every packet for the ship's public
//!   address before the kernel allocates anything for it, drops what the
//!   config says to drop, and marks the rest for the TC program;
//! - [`tc::seguro_tc`] copies every accepted packet to every replica with
//!   `bpf_clone_redirect`, rewriting the destination and keeping the source.
//!
//! Everything else on the interface passes untouched. docs/EDGE.md explains
//! the split.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod count;
mod maps;
mod net;
mod tc;
mod xdp;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Never reached: the verifier refuses a program with a path here, as an
    // endless loop, so a possible panic fails at load time.
    loop {}
}

/// The programs' license as the kernel reads it. None of the helpers they
/// call is GPL-only, so Seguro's own license will do.
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"MIT\0";
