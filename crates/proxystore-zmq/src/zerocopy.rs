//! Sending [`Bytes`] frames without copying them into libzmq.
//!
//! The `zmq` crate's `send(&[u8])` copies every frame into a new libzmq
//! message: for a 1 MiB get reply that is a 1 MiB `memcpy` on the server
//! thread (its largest cost under load, ahead of the kernel's own copy).
//! Here a large frame becomes a libzmq message *over* the `Bytes`: libzmq
//! holds a reference (a boxed `Bytes` clone) and drops it from its I/O
//! thread once the frame is on the wire. `Bytes` are immutable, so the
//! memory cannot change while libzmq reads it.

use std::os::raw::c_void;

use bytes::Bytes;

/// Frames at least this large are sent zero-copy; smaller ones are copied
/// (a copy of a few KiB costs less than the reference and the callback,
/// and libzmq keeps messages up to 33 bytes inline anyway).
pub(crate) const ZERO_COPY_MIN: usize = 8 * 1024;

/// Called by libzmq (on its I/O thread, or in `zmq_msg_close`) when it no
/// longer needs the frame: drops the `Bytes` reference it held.
unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Bytes>` leaked in `send_frame`, and
    // libzmq calls this exactly once per message.
    drop(unsafe { Box::from_raw(hint.cast::<Bytes>()) });
}

/// Sends `frame` on `socket` with `flags` (`SNDMORE`, `DONTWAIT`), without
/// copying it when it is at least [`ZERO_COPY_MIN`] bytes.
pub(crate) fn send_frame(socket: &mut zmq::Socket, frame: &Bytes, flags: i32) -> zmq::Result<()> {
    if frame.len() < ZERO_COPY_MIN {
        return socket.send(&frame[..], flags);
    }
    let held = Box::into_raw(Box::new(frame.clone()));
    let mut msg = zmq_sys::zmq_msg_t::default();
    // SAFETY: `frame`'s memory stays valid and unchanged until `release`
    // drops `held` (a reference to it); libzmq only reads it.
    let rc = unsafe {
        zmq_sys::zmq_msg_init_data(
            &mut msg,
            frame.as_ptr().cast_mut().cast(),
            frame.len(),
            Some(release),
            held.cast(),
        )
    };
    if rc == -1 {
        let e = last_error();
        // SAFETY: libzmq did not take `held` (init failed): reclaim it.
        drop(unsafe { Box::from_raw(held) });
        return Err(e);
    }
    // SAFETY: `msg` was initialised above; `socket.as_mut_ptr()` is a live
    // socket this thread owns. On success libzmq owns `msg`.
    let rc = unsafe { zmq_sys::zmq_msg_send(&mut msg, socket.as_mut_ptr(), flags) };
    if rc == -1 {
        let e = last_error();
        // SAFETY: a failed send leaves `msg` ours; closing it runs
        // `release`, which frees `held`.
        unsafe { zmq_sys::zmq_msg_close(&mut msg) };
        return Err(e);
    }
    Ok(())
}

fn last_error() -> zmq::Error {
    // SAFETY: reads this thread's libzmq errno; no other effect.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A zero-copy frame arrives intact, and libzmq gives back its
    /// reference (the `Bytes` is unique again) once it is sent.
    #[test]
    fn a_large_frame_arrives_and_its_reference_is_released() {
        let ctx = zmq::Context::new();
        let mut tx = ctx.socket(zmq::PAIR).unwrap();
        let rx = ctx.socket(zmq::PAIR).unwrap();
        rx.bind("inproc://zerocopy-test").unwrap();
        tx.connect("inproc://zerocopy-test").unwrap();
        let data: Vec<u8> = (0..3 * ZERO_COPY_MIN).map(|i| (i % 251) as u8).collect();
        let frame = Bytes::from(data.clone());
        send_frame(&mut tx, &frame, 0).unwrap();
        send_frame(&mut tx, &Bytes::from_static(b"small"), 0).unwrap();
        assert_eq!(rx.recv_bytes(0).unwrap(), data);
        assert_eq!(rx.recv_bytes(0).unwrap(), b"small");
        // inproc hands the message itself over; reading it closed it.
        assert!(frame.try_into_mut().is_ok(), "libzmq kept a reference");
    }

    /// A send that fails (no peer, non-blocking) hands the reference back.
    #[test]
    fn a_failed_send_releases_the_frame() {
        let ctx = zmq::Context::new();
        let mut tx = ctx.socket(zmq::DEALER).unwrap();
        tx.set_immediate(true).unwrap();
        tx.connect("tcp://127.0.0.1:9").unwrap();
        let frame = Bytes::from(vec![7u8; 2 * ZERO_COPY_MIN]);
        let err = send_frame(&mut tx, &frame, zmq::DONTWAIT).unwrap_err();
        assert_eq!(err, zmq::Error::EAGAIN);
        assert!(frame.try_into_mut().is_ok(), "libzmq kept a reference");
    }
}
