//! A map keyed by `TypeId`, with a hasher that does not re-hash what is already a hash.

use std::{
    any::TypeId,
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

pub(crate) type TypeMap<V> = HashMap<TypeId, V, BuildHasherDefault<TypeIdHasher>>;

/// `TypeId` hashes itself by writing (part of) its own hash; mixing it once more is enough.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(MIX);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(MIX);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_types_apart() {
        let mut map: TypeMap<&str> = TypeMap::default();
        map.insert(TypeId::of::<u8>(), "u8");
        map.insert(TypeId::of::<u16>(), "u16");
        map.insert(TypeId::of::<String>(), "String");
        assert_eq!(map.get(&TypeId::of::<u8>()), Some(&"u8"));
        assert_eq!(map.get(&TypeId::of::<u16>()), Some(&"u16"));
        assert_eq!(map.get(&TypeId::of::<String>()), Some(&"String"));
        assert_eq!(map.get(&TypeId::of::<u32>()), None);
    }
}
