//! A plain HTTP listener: `GET /stations/{id}/stream.opus`, a continuous Ogg/Opus body
//! read into a stack buffer and parsed page by page as it arrives.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;

use super::{
    EndReason, ListenerKind, ListenerSpec, Meter, TimeoutKind, established, slow_reader_due,
    stalls_now, stay_stalled, tune_socket,
};
use crate::http1::{self, BodyDecoder, MAX_HEAD_BYTES, ResponseHead};
use crate::ogg::{OggPageReader, PageInfo};
use crate::storm::MeterMark;
use crate::swarm::SwarmContext;
use crate::wire::PACKET_SAMPLES;

/// Bytes taken from the socket per read. The buffer lives on the stack of the poll
/// that reads, never in the listener's state.
const READ_CHUNK: usize = 16 * 1024;
/// Smallest read of a slow listener.
const SLOW_MIN_READ: usize = 512;

/// The body decoder, the page reader and what the pages said so far.
#[derive(Debug)]
struct Body {
    decoder: BodyDecoder,
    pages: OggPageReader,
    header_pages: u32,
    last_granule: Option<u64>,
    body_bytes: u64,
}

/// Connects, listens until the run ends or the body does, and says how it ended.
pub async fn listen(ctx: &SwarmContext, spec: ListenerSpec, meter: &mut Meter) -> EndReason {
    let connect_deadline =
        TokioInstant::from_std(meter.connect_started + ctx.connect_timeout).min(ctx.end_at);
    let mut tcp =
        match tokio::time::timeout_at(connect_deadline, TcpStream::connect(ctx.addr)).await {
            Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
            Ok(Err(error)) => return EndReason::ConnectError(error.kind()),
            Ok(Ok(tcp)) => tcp,
        };
    tune_socket(&tcp, spec.kind);
    let request = http1::get_request(&ctx.authority, &ctx.http_path);
    match tokio::time::timeout_at(connect_deadline, tcp.write_all(request.as_bytes())).await {
        Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
        Ok(Err(error)) => return EndReason::Io(error.kind()),
        Ok(Ok(())) => {}
    }
    drop(request);
    let (head, leftover) = match read_head(&tcp, connect_deadline).await {
        Ok(head) => head,
        Err(end) => return end,
    };
    if head.status != 200 {
        return EndReason::Rejected {
            status: head.status,
        };
    }
    let content_type = head.content_type.as_deref().unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("audio/ogg") {
        return EndReason::Protocol(format!("content type {content_type:?}, not audio/ogg"));
    }
    established(ctx, meter);
    let mut body = Body {
        decoder: BodyDecoder::new(head.framing),
        pages: OggPageReader::default(),
        header_pages: 0,
        last_granule: None,
        body_bytes: 0,
    };
    if let Err(end) = body.consume(&leftover, ctx, spec, meter) {
        return end;
    }
    drop(leftover);
    receive(ctx, spec, meter, &tcp, body).await
}

/// Reads until the response head is complete; returns it and the body bytes after it.
async fn read_head(
    tcp: &TcpStream,
    deadline: TokioInstant,
) -> Result<(ResponseHead, Vec<u8>), EndReason> {
    let mut received = Vec::with_capacity(1024);
    loop {
        match tokio::time::timeout_at(deadline, tcp.readable()).await {
            Err(_) => return Err(EndReason::Timeout(TimeoutKind::Connect)),
            Ok(Err(error)) => return Err(EndReason::Io(error.kind())),
            Ok(Ok(())) => {}
        }
        let mut buf = [0u8; 2048];
        match tcp.try_read(&mut buf) {
            Ok(0) => return Err(EndReason::ServerEof),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(EndReason::Io(error.kind())),
        }
        match http1::parse_head(&received) {
            Ok(Some((head, len))) => return Ok((head, received.split_off(len))),
            Ok(None) if received.len() <= MAX_HEAD_BYTES => {}
            Ok(None) => {
                return Err(EndReason::Protocol(format!(
                    "response head over {MAX_HEAD_BYTES} bytes"
                )));
            }
            Err(error) => return Err(EndReason::Protocol(error.to_string())),
        }
    }
}

async fn receive(
    ctx: &SwarmContext,
    spec: ListenerSpec,
    meter: &mut Meter,
    tcp: &TcpStream,
    mut body: Body,
) -> EndReason {
    let end = tokio::time::sleep_until(ctx.end_at);
    tokio::pin!(end);
    let first_audio_deadline =
        TokioInstant::from_std(meter.connect_started + ctx.first_audio_timeout);
    let idle = tokio::time::sleep_until(first_audio_deadline);
    tokio::pin!(idle);
    let mut last_activity = Instant::now();
    let nominal_bytes_per_sec = f64::from(ctx.nominal_kbps) * 1000.0 / 8.0;
    let read_limit = match spec.kind {
        ListenerKind::Slow => ((nominal_bytes_per_sec * ctx.slow_rate / 10.0) as usize)
            .clamp(SLOW_MIN_READ, READ_CHUNK),
        ListenerKind::Normal | ListenerKind::Stalled => READ_CHUNK,
    };
    let mut first_read: Option<Instant> = None;
    loop {
        if stalls_now(ctx, spec, meter, Instant::now()) {
            return stay_stalled(tcp, ctx.end_at, meter).await;
        }
        if body.decoder.is_done() {
            return EndReason::ServerEof;
        }
        let ready = tokio::select! {
            biased;
            () = &mut end => return EndReason::RunEnded,
            () = &mut idle => {
                let Some(_) = meter.first_audio else {
                    return EndReason::Timeout(TimeoutKind::FirstAudio);
                };
                let due = last_activity + ctx.idle_timeout;
                if Instant::now() >= due {
                    return EndReason::Timeout(TimeoutKind::Idle);
                }
                idle.as_mut().reset(TokioInstant::from_std(due));
                continue;
            }
            ready = tcp.readable() => ready,
        };
        if let Err(error) = ready {
            return EndReason::Io(error.kind());
        }
        let had_audio = meter.first_audio.is_some();
        match read_some(tcp, read_limit, &mut body, ctx, spec, meter) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(end) => return end,
        }
        let now = Instant::now();
        last_activity = now;
        if !had_audio && meter.first_audio.is_some() {
            idle.as_mut()
                .reset(TokioInstant::from_std(now + ctx.idle_timeout));
        }
        if spec.kind == ListenerKind::Slow {
            let since = *first_read.get_or_insert(now);
            let due = slow_reader_due(
                since,
                body.body_bytes as f64,
                nominal_bytes_per_sec,
                ctx.slow_rate,
            );
            if tokio::time::timeout_at(ctx.end_at, tokio::time::sleep_until(due.into()))
                .await
                .is_err()
            {
                return EndReason::RunEnded;
            }
            last_activity = Instant::now();
        }
    }
}

/// Reads what the socket has (up to `limit` bytes) and parses it; the count read, 0 if
/// nothing was ready.
fn read_some(
    tcp: &TcpStream,
    limit: usize,
    body: &mut Body,
    ctx: &SwarmContext,
    spec: ListenerSpec,
    meter: &mut Meter,
) -> Result<usize, EndReason> {
    let mut buf = [0u8; READ_CHUNK];
    match tcp.try_read(&mut buf[..limit.min(READ_CHUNK)]) {
        Ok(0) if body.pages.at_page_boundary() => Err(EndReason::ServerEof),
        Ok(0) => Err(EndReason::Protocol(
            "the stream ended in the middle of a page".into(),
        )),
        Ok(n) => body.consume(&buf[..n], ctx, spec, meter).map(|()| n),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(error) => Err(EndReason::Io(error.kind())),
    }
}

impl Body {
    /// Feeds framed body bytes through the decoder and page reader.
    fn consume(
        &mut self,
        bytes: &[u8],
        ctx: &SwarmContext,
        spec: ListenerSpec,
        meter: &mut Meter,
    ) -> Result<(), EndReason> {
        let now = Instant::now();
        let mut input = bytes;
        while let Some(mut payload) = self
            .decoder
            .next_payload(&mut input)
            .map_err(|error| EndReason::Protocol(error.to_string()))?
        {
            self.body_bytes += payload.len() as u64;
            while let Some(page) = self
                .pages
                .next_page(&mut payload)
                .map_err(|error| EndReason::Protocol(error.to_string()))?
            {
                self.page(page, now, ctx, spec, meter)?;
            }
        }
        Ok(())
    }

    fn page(
        &mut self,
        page: PageInfo,
        now: Instant,
        ctx: &SwarmContext,
        spec: ListenerSpec,
        meter: &mut Meter,
    ) -> Result<(), EndReason> {
        let mark = MeterMark::of(meter);
        if page.is_first_of_stream() {
            self.last_granule = None;
        }
        if page.is_opus_header() {
            self.header_pages += 1;
            return Ok(());
        }
        if self.header_pages < 2 {
            return Err(EndReason::Protocol(format!(
                "audio page {} before OpusHead and OpusTags",
                page.sequence
            )));
        }
        let completed = u64::from(page.packets_completed) * PACKET_SAMPLES;
        let samples = match (page.granule(), self.last_granule) {
            (Some(granule), Some(previous)) => {
                let delta = granule.wrapping_sub(previous);
                if delta != completed {
                    meter.unflagged_jumps += 1;
                }
                if granule >= previous {
                    delta
                } else {
                    completed
                }
            }
            _ => completed,
        };
        if let Some(granule) = page.granule() {
            self.last_granule = Some(granule);
        }
        if page.is_last_of_stream() {
            // A chained stream may follow, with its own headers and granule positions.
            self.last_granule = None;
            self.header_pages = 0;
        }
        let mut recorder = ctx.recorder.borrow_mut();
        meter.audio_arrived(now, samples, page.len as u64, recorder.group_for(spec));
        recorder.storm_window_unit(spec, now, mark, meter);
        Ok(())
    }
}
