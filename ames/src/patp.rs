//! `@p`, Urbit's phonetic spelling of ship numbers, including the `fein`
//! scramble that keeps neighbouring planets from sounding alike.

use core::fmt::{self, Write};

/// `sis:po`: one 3-letter syllable per byte value, for a word's high byte.
const PREFIXES: &str = concat!(
    "dozmarbinwansamlitsighidfidlissogdirwacsabwissib",
    "rigsoldopmodfoglidhopdardorlorhodfolrintogsilmir",
    "holpaslacrovlivdalsatlibtabhanticpidtorbolfosdot",
    "losdilforpilramtirwintadbicdifrocwidbisdasmidlop",
    "rilnardapmolsanlocnovsitnidtipsicropwitnatpanmin",
    "ritpodmottamtolsavposnapnopsomfinfonbanmorworsip",
    "ronnorbotwicsocwatdolmagpicdavbidbaltimtasmallig",
    "sivtagpadsaldivdactansidfabtarmonranniswolmispal",
    "lasdismaprabtobrollatlonnodnavfignomnibpagsopral",
    "bilhaddocridmocpacravripfaltodtiltinhapmicfanpat",
    "taclabmogsimsonpinlomrictapfirhasbosbatpochactid",
    "havsaplindibhosdabbitbarracparloddosbortochilmac",
    "tomdigfilfasmithobharmighinradmashalraglagfadtop",
    "mophabnilnosmilfopfamdatnoldinhatnacrisfotribhoc",
    "nimlarfitwalrapsarnalmoslandondanladdovrivbacpol",
    "laptalpitnambonrostonfodponsovnocsorlavmatmipfip",
);

/// `dex:po`: one 3-letter syllable per byte value, for a word's low byte.
const SUFFIXES: &str = concat!(
    "zodnecbudwessevpersutletfulpensytdurwepserwylsun",
    "rypsyxdyrnuphebpeglupdepdysputlughecryttyvsydnex",
    "lunmeplutseppesdelsulpedtemledtulmetwenbynhexfeb",
    "pyldulhetmevruttylwydtepbesdexsefwycburderneppur",
    "rysrebdennutsubpetrulsynregtydsupsemwynrecmegnet",
    "secmulnymtevwebsummutnyxrextebfushepbenmuswyxsym",
    "selrucdecwexsyrwetdylmynmesdetbetbeltuxtugmyrpel",
    "syptermebsetdutdegtexsurfeltudnuxruxrenwytnubmed",
    "lytdusnebrumtynseglyxpunresredfunrevrefmectedrus",
    "bexlebduxrynnumpyxrygryxfeptyrtustyclegnemfermer",
    "tenlusnussyltecmexpubrymtucfyllepdebbermughuttun",
    "bylsudpemdevlurdefbusbeprunmelpexdytbyttyplevmyl",
    "wedducfurfexnulluclennerlexrupnedlecrydlydfenwel",
    "nydhusrelrudneshesfetdesretdunlernyrsebhulryllud",
    "remlysfynwerrycsugnysnyllyndyndemluxfedsedbecmun",
    "lyrtesmudnytbyrsenwegfyrmurtelreptegpecnelnevfes",
);

/// `raku:ob`: the murmur3 seeds of the four Feistel rounds.
const RAKU: [u32; 4] = [0xb76d_5eed, 0xee28_1300, 0x85bc_ae01, 0x4b38_7af7];

fn syllable(table: &'static str, byte: u8) -> &'static str {
    let at = usize::from(byte) * 3;
    table.get(at..at + 3).unwrap_or_default()
}

/// Writes `n` as `@p`, following `co` in hoon.hoon: scramble with `fein`,
/// then one syllable for a single byte, else one `prefix+suffix` pair per
/// 16-bit word, most significant first, with `--` every fourth word.
pub(crate) fn write(f: &mut fmt::Formatter<'_>, n: u128) -> fmt::Result {
    let scrambled = fein(n);
    f.write_char('~')?;
    if let Ok(byte) = u8::try_from(scrambled) {
        return f.write_str(syllable(SUFFIXES, byte));
    }
    let words = (u128::BITS - scrambled.leading_zeros()).div_ceil(16);
    for index in (0..words).rev() {
        let [low, high] = ((scrambled >> (16 * index)) as u16).to_le_bytes();
        f.write_str(syllable(PREFIXES, high))?;
        f.write_str(syllable(SUFFIXES, low))?;
        f.write_str(match index {
            0 => "",
            _ if index % 4 == 0 => "--",
            _ => "-",
        })?;
    }
    Ok(())
}

/// `fein:ob`: scrambles planets, and the low (planet) half of moons, so
/// consecutive numbers get unrelated names. Galaxies, stars and comets are
/// left alone.
fn fein(n: u128) -> u128 {
    const PLANETS: core::ops::RangeInclusive<u128> = 0x1_0000..=0xffff_ffff;
    const MOONS: core::ops::RangeInclusive<u128> = 0x1_0000_0000..=u64::MAX as u128;
    if PLANETS.contains(&n) {
        // In range, so the truncation is exact.
        0x1_0000 + u128::from(feis(n as u32 - 0x1_0000))
    } else if MOONS.contains(&n) {
        (n & !0xffff_ffff) | fein(n & 0xffff_ffff)
    } else {
        n
    }
}

/// `feis:ob`: a permutation of `0..0xffff_0000`, cycle-walking once if the
/// cipher lands outside it.
fn feis(m: u32) -> u32 {
    const DOMAIN: u32 = 0xffff_0000;
    let c = fe(m);
    if c < DOMAIN { c } else { fe(c) }
}

/// `fe:ob`: four Feistel rounds over `a = 0xffff`, `b = 0x1_0000`, with the
/// legacy final swap when the right half equals `a` (urbit/arvo#1105).
/// Arithmetic wraps like the `c3_w` jet's.
fn fe(m: u32) -> u32 {
    const A: u32 = 0xffff;
    const B: u32 = 0x1_0000;
    let (mut left, mut right) = (m % A, m / A);
    for (round, seed) in RAKU.into_iter().enumerate() {
        // The jet hashes the right half's two low bytes.
        let f = mur3::murmurhash3_x86_32(&(right as u16).to_le_bytes(), seed);
        let modulus = if round % 2 == 0 { A } else { B };
        // The sum can exceed 32 bits before the modulus.
        let next = (u64::from(f) + u64::from(left)) % u64::from(modulus);
        left = right;
        right = next as u32;
    }
    if right == A {
        right.wrapping_mul(A).wrapping_add(left)
    } else {
        left.wrapping_mul(A).wrapping_add(right)
    }
}

#[cfg(test)]
mod tests {
    use crate::Ship;
    use std::string::ToString;

    fn patp(n: u128) -> std::string::String {
        Ship::new(n).to_string()
    }

    #[test]
    fn galaxies_and_stars_are_unscrambled() {
        assert_eq!(patp(0), "~zod");
        assert_eq!(patp(1), "~nec");
        assert_eq!(patp(255), "~fes");
        assert_eq!(patp(256), "~marzod");
        assert_eq!(patp(257), "~marnec");
        assert_eq!(patp(65535), "~fipfes");
    }

    /// Vectors from urbit-ob's test suite and the urbit docs.
    #[test]
    fn planets_are_scrambled() {
        assert_eq!(patp(65536), "~dapnep-ronmyl");
        assert_eq!(patp(65537), "~milrys-soglec");
        assert_eq!(patp(65792), "~wicdev-wisryt");
        assert_eq!(patp(14_287_616), "~rosmur-hobrem");
        assert_eq!(patp(14_287_617), "~sallus-nodlut");
        assert_eq!(patp(14_287_618), "~marder-mopdur");
        assert_eq!(patp(14_287_619), "~laphec-savted");
        assert_eq!(patp(15_663_360), "~nidsut-tomdun");
        assert_eq!(patp(1_624_961_343), "~sampel-palnet");
        assert_eq!(patp(0xffff_ffff), "~dostec-risfen");
    }

    #[test]
    fn moons_scramble_their_low_half() {
        assert_eq!(patp(1 << 32), "~doznec-dozzod-dozzod");
        assert_eq!(patp(u64::MAX.into()), "~fipfes-fipfes-dostec-risfen");
    }

    #[test]
    fn comets_are_unscrambled_with_a_double_dash() {
        assert_eq!(patp(1 << 64), "~doznec--dozzod-dozzod-dozzod-dozzod");
        assert_eq!(
            patp(u128::MAX),
            "~fipfes-fipfes-fipfes-fipfes--fipfes-fipfes-fipfes-fipfes"
        );
    }

    /// `feis` must land in `0..0xffff_0000` (else `fein` would leave the
    /// planet space); check both ends of its input range.
    #[test]
    fn feis_stays_in_domain() {
        for m in (0..0x1_0000).chain(0xfffe_0000..0xffff_0000) {
            assert!(super::feis(m) < 0xffff_0000, "feis({m:#x}) escaped");
        }
    }
}
