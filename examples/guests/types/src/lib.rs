//! A component exporting one function per WIT type family.

wit_bindgen::generate!({ world: "types", path: "wit" });

struct Types;

impl exports::wasmswap::guests::api::Guest for Types {
    fn echo(s: String) -> String {
        s
    }
}

impl Guest for Types {
    fn negate(b: bool) -> bool {
        !b
    }
    fn add_u8(a: u8, b: u8) -> u8 {
        a.wrapping_add(b)
    }
    fn add_s16(a: i16, b: i16) -> i16 {
        a.wrapping_add(b)
    }
    fn add_u32(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    fn add_s64(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    fn add_u64(a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    fn mix_ints(a: i8, b: u16, c: i32) -> i64 {
        i64::from(a) + i64::from(b) + i64::from(c)
    }
    fn mul_f32(a: f32, b: f32) -> f32 {
        a * b
    }
    fn sqrt_f64(x: f64) -> f64 {
        x.sqrt()
    }
    fn next_char(c: char) -> char {
        char::from_u32(c as u32 + 1).unwrap_or(c)
    }
    fn greet(name: String) -> String {
        format!("hello, {name}!")
    }
    fn sum_list(xs: Vec<i64>) -> i64 {
        xs.iter().sum()
    }
    fn reverse_bytes(mut xs: Vec<u8>) -> Vec<u8> {
        xs.reverse();
        xs
    }
    fn move_point(p: Point, dx: i32, dy: i32) -> Point {
        Point { x: p.x + dx, y: p.y + dy, label: p.label }
    }
    fn swap_pair(t: (String, u32)) -> (u32, String) {
        (t.1, t.0)
    }
    fn area(s: Shape) -> f64 {
        match s {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rect((w, h)) => w * h,
            Shape::Empty => 0.0,
        }
    }
    fn next_color(c: Color) -> Color {
        match c {
            Color::Red => Color::Green,
            Color::Green => Color::Blue,
            Color::Blue => Color::Red,
        }
    }
    fn invert(p: Perms) -> Perms {
        Perms::all() - p
    }
    fn first_word(s: String) -> Option<String> {
        s.split_whitespace().next().map(str::to_string)
    }
    fn checked_div(a: i32, b: i32) -> Result<i32, String> {
        a.checked_div(b).ok_or_else(|| format!("cannot divide {a} by {b}"))
    }
    fn no_args() {}
    fn health_check() -> bool {
        true
    }
}

export!(Types);
