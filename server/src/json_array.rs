//! A JSON array written from values that are already JSON (an index's stored hits, the
//! feed tail's serialized events): the bytes serializing the parsed values as one array
//! would give, without parsing them again.

/// The length of the array [`push`] writes for `values`.
pub fn len<J: AsRef<[u8]>>(values: &[J]) -> usize {
    values.iter().map(|v| v.as_ref().len() + 1).sum::<usize>() + 1
}

/// Appends `[v1,v2,…]` to `out`.
pub fn push<J: AsRef<[u8]>>(out: &mut Vec<u8>, values: &[J]) {
    out.push(b'[');
    for (n, value) in values.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(value.as_ref());
    }
    out.push(b']');
}
