//! A rustls server connection over a TCP stream, driven by hand so the simulation
//! decides which bytes leave on a failed handshake (an alert, a different alert, or
//! nothing), then usable as an async stream for HTTP.

use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

pub(crate) struct TlsIo {
    pub io: TcpStream,
    pub conn: ServerConnection,
    /// Encrypted bytes waiting for the socket.
    out: Vec<u8>,
    eof: bool,
}

/// How a handshake ended badly.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// rustls rejected the peer; its alert is queued but not written.
    Tls(rustls::Error),
    Io,
    Eof,
    Timeout,
}

impl TlsIo {
    pub fn new(io: TcpStream, conn: ServerConnection) -> TlsIo {
        TlsIo {
            io,
            conn,
            out: vec![],
            eof: false,
        }
    }

    fn queue(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.out)?;
        }
        Ok(())
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await
    }

    /// Drives the handshake to its end. On a TLS error nothing is written: the caller
    /// sends the alert (or not) with [`TlsIo::send_queued`] / [`TlsIo::send_raw`].
    pub async fn handshake(&mut self, within: Duration) -> Result<(), HandshakeError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            self.queue().map_err(|_| HandshakeError::Io)?;
            tokio::time::timeout_at(deadline, self.flush_out())
                .await
                .map_err(|_| HandshakeError::Timeout)?
                .map_err(|_| HandshakeError::Io)?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut buf))
                .await
                .map_err(|_| HandshakeError::Timeout)?
                .map_err(|_| HandshakeError::Io)?;
            if n == 0 {
                return Err(HandshakeError::Eof);
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                self.conn
                    .read_tls(&mut data)
                    .map_err(|_| HandshakeError::Io)?;
                self.conn
                    .process_new_packets()
                    .map_err(HandshakeError::Tls)?;
            }
        }
    }

    /// Writes what rustls queued (after an error: its alert).
    pub async fn send_queued(&mut self) -> io::Result<()> {
        self.queue()?;
        self.flush_out().await
    }

    /// Writes raw bytes instead of what rustls queued.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Closes like Envoy after a rejection: FIN, then drain what the peer still sends so
    /// the kernel does not answer with a reset before the peer read the alert.
    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(n) = self.io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Post-handshake records (tickets, key updates) may need writing.
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            let mut tmp = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let filled = rb.filled();
            if filled.is_empty() {
                this.eof = true;
                let _ = this.conn.read_tls(&mut io::empty());
                let _ = this.conn.process_new_packets();
                continue;
            }
            let mut data = filled;
            while !data.is_empty() {
                this.conn.read_tls(&mut data)?;
                if let Err(e) = this.conn.process_new_packets() {
                    let _ = this.queue();
                    let _ = this.poll_drain(cx);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            }
            this.queue()?;
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = this.conn.writer().write(data)?;
        this.queue()?;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        this.queue()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
