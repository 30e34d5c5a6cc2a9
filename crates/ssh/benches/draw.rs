//! What one frame of the full-screen chat costs the server: a room's traffic redraws every
//! member's screen, so this cost times the sessions and the frame rate is the chat's CPU.
//! `cargo bench -p kanava-ssh --bench draw`; figures in docs/benchmarks.md.

use criterion::{Criterion, criterion_group, criterion_main};
use kanava_core::MemoryBudget;
use kanava_ssh::tui::view::{ChatView, LineKind, PaneLine};
use kanava_ssh::tui::{FrameSink, Screen, clamp};

/// A screen of `cols`x`rows` with a pane full of messages; each iteration adds a message (as
/// a busy room does) and draws the frame, which is then dropped as the connection takes it.
fn draw_after_a_message(c: &mut Criterion, name: &str, cols: u32, rows: u32, text: &str) {
    let (frames, mut out) = FrameSink::new(MemoryBudget::new(usize::MAX));
    let mut screen = Screen::new(clamp(cols, rows), frames).expect("screen");
    let mut view = ChatView::default();
    view.room = "lobby".into();
    view.members = 500;
    let mut n = 0u64;
    let mut message = |view: &mut ChatView| {
        n += 1;
        let nick = format!("user{}", n % 500);
        let line = format!("12:{:02} <{nick}> {text} {n}", n % 60);
        view.push(PaneLine::with_nick(line, &nick, LineKind::Message));
    };
    for _ in 0..rows {
        message(&mut view);
    }
    c.bench_function(name, |b| {
        b.iter(|| {
            message(&mut view);
            screen.draw(&view).expect("draw");
            while out.try_recv().is_ok() {}
        });
    });
}

fn frames(c: &mut Criterion) {
    draw_after_a_message(
        c,
        "draw 80x24 ascii",
        80,
        24,
        "the quick brown fox jumps over",
    );
    draw_after_a_message(
        c,
        "draw 80x24 non-ascii",
        80,
        24,
        "Hyvää päivää, 世界 👋🏽 ok",
    );
    draw_after_a_message(c, "draw 200x60 ascii", 200, 60, &"lorem ipsum ".repeat(20));
}

criterion_group!(benches, frames);
criterion_main!(benches);
