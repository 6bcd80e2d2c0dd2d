//! Typed arrays (wire.md §11.4): numeric arrays as dtype, shape and little-endian C-order data,
//! readable in Rust as `&[f64]` (and the other element types) without a copy, and in Python
//! with `numpy.frombuffer(payload, dtype, offset=data_offset).reshape(dims)`.
//!
//! Owns the payload layout and its checks (every count and product overflow-checked before use).
//! Never allocates on the read path unless the data is misaligned or the host is big-endian, and
//! never uses `unsafe` (alignment-checked casts through `bytemuck`).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use super::schema::PayloadError;

/// Element types (wire.md §11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    /// u8
    U8 = 0x01,
    /// i8
    I8 = 0x02,
    /// u16
    U16 = 0x03,
    /// i16
    I16 = 0x04,
    /// u32
    U32 = 0x05,
    /// i32
    I32 = 0x06,
    /// u64
    U64 = 0x07,
    /// i64
    I64 = 0x08,
    /// IEEE 754 half precision (read as `u16` bits)
    F16 = 0x09,
    /// f32
    F32 = 0x0A,
    /// f64
    F64 = 0x0B,
    /// bool, one byte (0 or 1)
    Bool = 0x0C,
}

impl DType {
    /// The dtype with this wire tag.
    pub fn from_tag(tag: u8) -> Option<DType> {
        use DType::*;
        Some(match tag {
            0x01 => U8,
            0x02 => I8,
            0x03 => U16,
            0x04 => I16,
            0x05 => U32,
            0x06 => I32,
            0x07 => U64,
            0x08 => I64,
            0x09 => F16,
            0x0A => F32,
            0x0B => F64,
            0x0C => Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        use DType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 | F16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
        }
    }

    /// The numpy dtype string (little-endian), for peers and documentation.
    pub fn numpy(self) -> &'static str {
        use DType::*;
        match self {
            U8 => "<u1",
            I8 => "<i1",
            U16 => "<u2",
            I16 => "<i2",
            U32 => "<u4",
            I32 => "<i4",
            U64 => "<u8",
            I64 => "<i8",
            F16 => "<f2",
            F32 => "<f4",
            F64 => "<f8",
            Bool => "|b1",
        }
    }
}

/// A Rust element type with a wire dtype.
pub trait Element: bytemuck::Pod {
    /// Its dtype.
    const DTYPE: DType;
    /// Reads one element from little-endian bytes (the copy path).
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! elements {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn from_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
elements!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
          u64 => U64, i64 => I64, f32 => F32, f64 => F64);

/// Most dimensions (wire.md §11.4).
pub const MAX_NDIM: usize = 32;

/// Building typed-array payloads.
#[derive(Debug)]
pub struct TypedArray;

impl TypedArray {
    /// The payload for `data` (elements in C order) with shape `dims`; `dims` must multiply to
    /// `data.len()` (one dimension of `data.len()` if empty).
    pub fn encode<T: Element>(data: &[T], dims: &[u64]) -> Result<Bytes, PayloadError> {
        let one = [data.len() as u64];
        let dims = if dims.is_empty() { &one[..] } else { dims };
        let count = element_count(dims)?;
        if count != data.len() as u64 {
            return Err(invalid(TypedArrayError::ShapeMismatch {
                dims: dims.to_vec(),
                count,
                len: data.len(),
            }));
        }
        let mut buf = Self::header(T::DTYPE, dims, std::mem::size_of_val(data))?;
        if cfg!(target_endian = "little") {
            buf.put_slice(bytemuck::cast_slice(data));
        } else {
            for x in data {
                let b = bytemuck::bytes_of(x);
                buf.extend(b.iter().rev());
            }
        }
        Ok(buf.freeze())
    }

    /// The header (through the padding) for `data_len` bytes of `dtype` with shape `dims`,
    /// with capacity for the data: append the little-endian data to finish the payload.
    pub fn header(dtype: DType, dims: &[u64], data_len: usize) -> Result<BytesMut, PayloadError> {
        if dims.len() > MAX_NDIM {
            return Err(invalid(TypedArrayError::TooManyDimensions {
                ndim: dims.len(),
            }));
        }
        let mut head = BytesMut::with_capacity(2 + dims.len() * 8 + 16 + data_len);
        head.put_u8(dtype as u8);
        head.put_u8(dims.len() as u8);
        for (index, &d) in dims.iter().enumerate() {
            if !crate::frame::varint::fits(d) {
                return Err(invalid(TypedArrayError::BadDimension {
                    index,
                    detail: format!("{d} is over 2^62 - 1"),
                }));
            }
            crate::frame::varint::write(&mut head, d);
        }
        // spec: wire.md §11.4 — Data starts at a multiple of 16 from the payload start.
        let pad = (16 - (head.len() + 1) % 16) % 16;
        head.put_u8(pad as u8);
        head.put_bytes(0, pad);
        Ok(head)
    }
}

/// What is wrong with a typed array (wire.md §11.4). Each variant is a kind the payload
/// vectors name (`spec/vectors/payloads.json`), with the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedArrayError {
    /// The payload has no bytes at all.
    #[error("Empty: the payload is empty")]
    Empty,
    /// A field the layout requires is missing (the payload ends first).
    #[error("Truncated: the payload ends before {field}")]
    Truncated {
        /// The field that is missing.
        field: &'static str,
    },
    /// A DType the table does not define.
    #[error("UnknownDType: dtype 0x{tag:02x}")]
    UnknownDType {
        /// The DType byte.
        tag: u8,
    },
    /// More than 32 dimensions.
    #[error("TooManyDimensions: NDim {ndim} > {MAX_NDIM}")]
    TooManyDimensions {
        /// The NDim byte (or the shape's length, when encoding).
        ndim: usize,
    },
    /// A Dimension varint that is cut short, non-minimal or (encoding) over 2^62 − 1.
    #[error("BadDimension: dimension {index}: {detail}")]
    BadDimension {
        /// Which dimension.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A Pad Length over 15, or longer than what follows.
    #[error("BadPadLength: Pad Length {pad}")]
    BadPadLength {
        /// The Pad Length byte.
        pad: u8,
    },
    /// A pad byte that is not zero.
    #[error("NonZeroPadding: a pad byte is not zero")]
    NonZeroPadding,
    /// The product of the dimensions times the item size overflows 64 bits.
    #[error("DimensionOverflow: shape {dims:?} overflows 2^64 - 1")]
    DimensionOverflow {
        /// The shape.
        dims: Vec<u64>,
    },
    /// The Data length is not the product of the dimensions times the item size.
    #[error(
        "LengthMismatch: shape {dims:?} of {dtype} needs {want} data bytes, payload has {got}"
    )]
    LengthMismatch {
        /// The shape.
        dims: Vec<u64>,
        /// The numpy dtype.
        dtype: &'static str,
        /// Bytes the shape needs.
        want: u64,
        /// Bytes the payload has.
        got: u64,
    },
    /// Encoding: the shape does not hold as many elements as the data has.
    #[error("ShapeMismatch: shape {dims:?} holds {count} elements, data has {len}")]
    ShapeMismatch {
        /// The shape.
        dims: Vec<u64>,
        /// Elements the shape holds.
        count: u64,
        /// Elements given.
        len: usize,
    },
    /// Reading: the element type asked for is not the array's.
    #[error("WrongElementType: asked for {asked:?}, the array holds {held:?}")]
    WrongElementType {
        /// The type asked for.
        asked: DType,
        /// The array's.
        held: DType,
    },
}

impl TypedArrayError {
    /// The variant's name, as the payload vectors name it (`kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            TypedArrayError::Empty => "Empty",
            TypedArrayError::Truncated { .. } => "Truncated",
            TypedArrayError::UnknownDType { .. } => "UnknownDType",
            TypedArrayError::TooManyDimensions { .. } => "TooManyDimensions",
            TypedArrayError::BadDimension { .. } => "BadDimension",
            TypedArrayError::BadPadLength { .. } => "BadPadLength",
            TypedArrayError::NonZeroPadding => "NonZeroPadding",
            TypedArrayError::DimensionOverflow { .. } => "DimensionOverflow",
            TypedArrayError::LengthMismatch { .. } => "LengthMismatch",
            TypedArrayError::ShapeMismatch { .. } => "ShapeMismatch",
            TypedArrayError::WrongElementType { .. } => "WrongElementType",
        }
    }
}

fn invalid(e: TypedArrayError) -> PayloadError {
    PayloadError::InvalidTypedArray(e)
}

/// spec: wire.md §11.4 — the product of the dimensions, in unsigned 64-bit arithmetic.
fn element_count(dims: &[u64]) -> Result<u64, PayloadError> {
    dims.iter().try_fold(1u64, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| {
            invalid(TypedArrayError::DimensionOverflow {
                dims: dims.to_vec(),
            })
        })
    })
}

/// A received typed array: a parsed header and a view of the data (no copy).
#[derive(Debug, Clone)]
pub struct TypedArrayView {
    dtype: DType,
    dims: Vec<u64>,
    data_offset: usize,
    payload: Bytes,
}

impl TypedArrayView {
    /// Parses and checks `payload` (wire.md §11.4): a known dtype, at most 32 dimensions, a pad
    /// of 0 – 15 zero bytes, and data of exactly product(dims) × item size bytes.
    pub fn parse(payload: Bytes) -> Result<TypedArrayView, PayloadError> {
        let b = &payload[..];
        let (&tag, rest) = b
            .split_first()
            .ok_or_else(|| invalid(TypedArrayError::Empty))?;
        let dtype =
            DType::from_tag(tag).ok_or_else(|| invalid(TypedArrayError::UnknownDType { tag }))?;
        let (&ndim, mut rest) = rest
            .split_first()
            .ok_or_else(|| invalid(TypedArrayError::Truncated { field: "NDim" }))?;
        if ndim as usize > MAX_NDIM {
            return Err(invalid(TypedArrayError::TooManyDimensions {
                ndim: ndim as usize,
            }));
        }
        let mut dims = Vec::with_capacity(ndim as usize);
        for index in 0..ndim as usize {
            let (d, used) = crate::frame::varint::read(rest).map_err(|e| {
                invalid(TypedArrayError::BadDimension {
                    index,
                    detail: format!("{e:?}"),
                })
            })?;
            dims.push(d);
            rest = &rest[used..];
        }
        let (&pad, rest) = rest.split_first().ok_or_else(|| {
            invalid(TypedArrayError::Truncated {
                field: "Pad Length",
            })
        })?;
        if pad > 15 || rest.len() < pad as usize {
            return Err(invalid(TypedArrayError::BadPadLength { pad }));
        }
        if rest[..pad as usize].iter().any(|&z| z != 0) {
            return Err(invalid(TypedArrayError::NonZeroPadding));
        }
        let data_offset = b.len() - rest.len() + pad as usize;
        let want = element_count(&dims)?
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| invalid(TypedArrayError::DimensionOverflow { dims: dims.clone() }))?;
        let got = (b.len() - data_offset) as u64;
        if want != got {
            return Err(invalid(TypedArrayError::LengthMismatch {
                dims,
                dtype: dtype.numpy(),
                want,
                got,
            }));
        }
        Ok(TypedArrayView {
            dtype,
            dims,
            data_offset,
            payload,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Where the data starts in the payload (numpy's `offset`).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The raw little-endian data (a slice of the payload, no copy).
    pub fn data(&self) -> Bytes {
        self.payload.slice(self.data_offset..)
    }

    /// The elements as `&[T]` when `T` matches the dtype: borrowed in place when the data is
    /// aligned on a little-endian host (the common case: the payload pads the data to 16
    /// bytes), copied otherwise.
    pub fn as_slice<T: Element>(&self) -> Result<Cow<'_, [T]>, PayloadError> {
        if T::DTYPE != self.dtype {
            return Err(invalid(TypedArrayError::WrongElementType {
                asked: T::DTYPE,
                held: self.dtype,
            }));
        }
        let data = &self.payload[self.data_offset..];
        if cfg!(target_endian = "little") {
            if let Ok(s) = bytemuck::try_cast_slice::<u8, T>(data) {
                return Ok(Cow::Borrowed(s));
            }
        }
        let size = std::mem::size_of::<T>();
        Ok(Cow::Owned(
            data.chunks_exact(size).map(T::from_le).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_arrays_round_trip_and_read_in_place() {
        let data: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let payload = TypedArray::encode(&data, &[10, 100]).unwrap();
        assert_eq!(
            payload.len() % 16,
            0,
            "header padded to 16, data a multiple of 8"
        );
        let view = TypedArrayView::parse(payload).unwrap();
        assert_eq!(view.dims(), &[10, 100]);
        assert_eq!(view.data_offset() % 16, 0);
        let s = view.as_slice::<f64>().unwrap();
        assert_eq!(&s[..], &data[..]);
        assert!(view.as_slice::<f32>().is_err());
    }

    #[test]
    fn every_header_error_is_named() {
        let ok = TypedArray::encode(&[1u16, 2, 3], &[]).unwrap();
        assert!(TypedArrayView::parse(ok.clone()).is_ok());
        for (bytes, needle) in [
            (vec![], "Empty"),
            (vec![0x0D, 0], "UnknownDType"),
            (vec![0x01, 33], "TooManyDimensions"),
            (vec![0x01, 1, 0x40], "BadDimension"),
            (vec![0x01, 0, 16], "BadPadLength"),
            (vec![0x01, 0, 1, 7], "NonZeroPadding"),
            (vec![0x0B, 1, 3, 0, 1, 2], "LengthMismatch"),
            // 2^62 × 2^62 elements: the product overflows.
            (
                vec![
                    0x01, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
                ],
                "DimensionOverflow",
            ),
        ] {
            let e = TypedArrayView::parse(Bytes::from(bytes)).unwrap_err();
            assert_eq!(e.kind(), needle, "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
    }

    #[test]
    fn misaligned_data_is_copied_not_refused() {
        let payload = TypedArray::encode(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
        let mut shifted = BytesMut::from(&[0u8][..]);
        shifted.extend_from_slice(&payload);
        let view = TypedArrayView::parse(shifted.freeze().slice(1..)).unwrap();
        let s = view.as_slice::<f32>().unwrap();
        assert!(matches!(s, Cow::Owned(_)));
        assert_eq!(&s[..], &[1.0, 2.0, 3.0]);
    }
}
