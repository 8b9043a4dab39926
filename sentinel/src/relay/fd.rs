//! One byte with at most one descriptor attached (SCM_RIGHTS), over a
//! Unix stream. Reading one byte per call keeps each descriptor with its
//! byte: the kernel never merges two sends that carry descriptors into one
//! read of a single byte.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use tokio::{io::Interest, net::UnixStream};

/// Room for one control message of a few descriptors, aligned for cmsghdr.
type Control = [u64; 8];

/// Sends `byte`, with `fd` attached when given.
pub async fn send(stream: &UnixStream, byte: u8, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fd = fd.map(|f| f.as_raw_fd());
    stream
        .async_io(Interest::WRITABLE, || {
            send_now(stream.as_raw_fd(), byte, fd)
        })
        .await
}

/// The next byte and the descriptor that came with it; `None` at the end
/// of the stream. Extra descriptors (a peer that sent several) are closed.
pub async fn recv(stream: &UnixStream) -> io::Result<Option<(u8, Option<OwnedFd>)>> {
    stream
        .async_io(Interest::READABLE, || recv_now(stream.as_raw_fd()))
        .await
}

/// A header for one message of the byte in `iov`, with no control data
/// yet; valid while `iov` and what it points at are.
fn header(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}

fn one_byte(data: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

fn send_now(sock: RawFd, byte: u8, fd: Option<RawFd>) -> io::Result<()> {
    let mut data = [byte];
    let mut iov = one_byte(&mut data);
    let mut control: Control = [0; 8];
    let mut msg = header(&mut iov);
    if let Some(fd) = fd {
        let size = size_of::<RawFd>() as u32;
        // SAFETY: `control` outlives `msg` and is larger than CMSG_SPACE
        // of one descriptor, so CMSG_FIRSTHDR is non-null and its data
        // lies inside `control`.
        unsafe {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: `msg` points at `iov`, `data` and `control`, all alive here.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::ErrorKind::WriteZero.into()),
        _ => Ok(()),
    }
}

fn recv_now(sock: RawFd) -> io::Result<Option<(u8, Option<OwnedFd>)>> {
    let mut data = [0u8];
    let mut iov = one_byte(&mut data);
    let mut control: Control = [0; 8];
    let mut msg = header(&mut iov);
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<Control>();
    // SAFETY: `msg` describes writable buffers of the lengths it gives.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to msg_controllen; CMSG_*
    // walk only within it, and each SCM_RIGHTS entry is a descriptor this
    // process now owns (closed on drop if not kept).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(first.add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors were cut off in transit"));
    }
    Ok(Some((data[0], fds.into_iter().next())))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_descriptor_arrives_with_its_byte_and_works() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut inner_a, mut inner_b) = UnixStream::pair().unwrap();
        send(&a, b'x', Some(inner_b.as_fd())).await.unwrap();
        send(&a, b'y', None).await.unwrap();
        send(&a, b'z', Some(inner_b.as_fd())).await.unwrap();
        drop(a);
        let (byte, fd) = recv(&b).await.unwrap().unwrap();
        assert_eq!(byte, b'x');
        let fd = fd.expect("a descriptor with x");
        assert_eq!(
            recv(&b).await.unwrap().map(|(b, f)| (b, f.is_some())),
            Some((b'y', false))
        );
        let (byte, again) = recv(&b).await.unwrap().unwrap();
        assert_eq!((byte, again.is_some()), (b'z', true));
        assert!(recv(&b).await.unwrap().is_none(), "the end of the stream");
        // The received descriptor is the same socket: what is written to
        // it reaches the other end of the pair.
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true).unwrap();
        let mut received = UnixStream::from_std(std).unwrap();
        received.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        inner_a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        drop(inner_b.shutdown().await);
    }
}
