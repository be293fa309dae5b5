//! Taking a plain HTTP listener's socket away from actix-http once its response head
//! is sent.
//!
//! Every connection the server accepts is a [`ListenerIo`]. The stream handler checks
//! the request as any other (access, caps, station, rendition), answers the head
//! (`Connection: close`, a body delimited by the end of the connection) with a body
//! that ends at once, and arms the connection's [`Handover`] with the listener. actix-http
//! then writes the head and, the response being complete, shuts the connection down:
//! for an armed connection that shutdown is skipped, and dropping the [`ListenerIo`]
//! gives the socket to its worker's page writer ([`super::http::adopt`]). From then
//! on the listener costs its socket and a few hundred bytes of state, none of
//! actix-http's per-connection buffers.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::http::HttpListener;

/// Where the stream handler leaves a listener for its connection to hand over.
#[derive(Debug, Default)]
pub struct Handover {
    listener: RefCell<Option<HttpListener>>,
}

impl Handover {
    /// Gives the connection's socket to `listener` once the response is written.
    pub(crate) fn arm(&self, listener: HttpListener) {
        *self.listener.borrow_mut() = Some(listener);
    }

    fn is_armed(&self) -> bool {
        self.listener.borrow().is_some()
    }
}

/// A connection as actix-http sees it: the socket, and the handover its requests can arm.
#[derive(Debug)]
pub struct ListenerIo {
    stream: Option<TcpStream>,
    handover: Rc<Handover>,
}

impl ListenerIo {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
            handover: Rc::default(),
        }
    }

    /// The handover, for the connection's extensions (`HttpRequest::conn_data`).
    pub fn handover(&self) -> Rc<Handover> {
        Rc::clone(&self.handover)
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for ListenerIo {
    fn drop(&mut self) {
        let listener = self.handover.listener.borrow_mut().take();
        if let (Some(listener), Some(stream)) = (listener, self.stream.take()) {
            super::http::adopt(stream, listener);
        }
    }
}

impl AsyncRead for ListenerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for ListenerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_flush(cx)
    }

    /// An armed connection is not shut down: its socket lives on with the page writer.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handover.is_armed() {
            return Poll::Ready(Ok(()));
        }
        this.stream()?.poll_shutdown(cx)
    }
}
