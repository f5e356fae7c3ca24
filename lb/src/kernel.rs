//! The kernel engine: the XDP classifier and TC cloner from `ebpf/`, loaded
//! from the copy embedded in this binary, attached to the edge interface,
//! and their maps.

use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp,
    XdpMode, tc::SchedClassifierLinkId,
};
use aya::sys::SyscallError;
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfError, EbpfLoader};
use lb_abi::{Counters, MAP_ACTIVE, MAP_COUNTERS, MAP_PLANS, PROG_TC, PROG_XDP, Plan};
use tracing::{info, warn};

use crate::Error;
use crate::error::Cause;
use crate::qdisc::delete_clsact;

/// The compiled programs, built by build.rs from `ebpf/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seguro-ebpf"));

/// How the XDP program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// In the driver, before any skb exists.
    Native,
    /// In the kernel's generic hook, after the skb is built.
    Generic,
}

impl XdpAttach {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpAttach::Native => "xdp-native",
            XdpAttach::Generic => "xdp-generic",
        }
    }
}

/// How the TC program ended up attached to the ingress hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcHook {
    /// A TCX link (Linux 6.6+): no qdisc, and the kernel detaches it by
    /// itself if this process dies.
    Tcx,
    /// A cls_bpf filter under the `clsact` qdisc.
    Clsact,
}

impl TcHook {
    pub fn as_str(self) -> &'static str {
        match self {
            TcHook::Tcx => "tcx",
            TcHook::Clsact => "clsact",
        }
    }
}

/// The programs, loaded and verified, and their maps.
pub struct Programs {
    ebpf: Ebpf,
    active: Array<MapData, u32>,
    plans: Array<MapData, Plan>,
    counters: PerCpuArray<MapData, Counters>,
    /// Which plan entry is live.
    live: u32,
    attached: Option<Attached>,
}

struct Attached {
    interface: String,
    xdp: XdpLinkId,
    xdp_mode: XdpAttach,
    tc: SchedClassifierLinkId,
    tc_mode: TcHook,
    /// Whether we added the interface's `clsact` qdisc (and so remove it).
    added_clsact: bool,
}

impl Programs {
    /// Loads both programs into the kernel, through the verifier, with a
    /// plan that passes everything.
    pub fn load() -> Result<Self, Error> {
        let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(load_error)?;
        for name in [PROG_XDP, PROG_TC] {
            let program = ebpf.program_mut(name).ok_or_else(|| {
                Error::Load(format!("the embedded object has no program `{name}`"))
            })?;
            let loaded = match program {
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SchedClassifier(p) => p.load(),
                _ => return Err(Error::Load(format!("`{name}` is not an XDP or TC program"))),
            };
            loaded.map_err(|e| program_error(name, e))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::Load(format!("the embedded object has no map `{name}`")))
        };
        let (active, plans, counters) = (take(MAP_ACTIVE)?, take(MAP_PLANS)?, take(MAP_COUNTERS)?);
        let map_error = |e: aya::maps::MapError| Error::Loading {
            what: "map layout",
            source: e.into(),
        };
        let mut programs = Self {
            active: Array::try_from(active).map_err(map_error)?,
            plans: Array::try_from(plans).map_err(map_error)?,
            counters: PerCpuArray::try_from(counters).map_err(map_error)?,
            ebpf,
            live: 0,
            attached: None,
        };
        programs.publish(&Plan::OFF)?;
        Ok(programs)
    }

    /// Makes `plan` live: writes it into the entry no packet is reading, then
    /// flips the index, so every packet sees either the old plan or the new
    /// one, whole. Replicas in both get every packet.
    pub fn publish(&mut self, plan: &Plan) -> Result<(), Error> {
        let next = self.live ^ 1;
        self.plans.set(next, plan, 0).map_err(|source| Error::Map {
            what: "writing the plan",
            source,
        })?;
        self.active.set(0, next, 0).map_err(|source| Error::Map {
            what: "switching plans",
            source,
        })?;
        self.live = next;
        Ok(())
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        let per_cpu = self.counters.get(&0, 0).map_err(|source| Error::Map {
            what: "reading counters",
            source,
        })?;
        let mut sum = Counters::ZERO;
        for c in per_cpu.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// Attaches the TC program, then the XDP program, to `interface`.
    ///
    /// TC first: it alone already handles every packet correctly (it
    /// classifies what XDP did not mark), so there is no moment where
    /// packets for the ship are half handled.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: config::LbMode,
        hook: config::TcAttach,
    ) -> Result<(), Error> {
        if self.attached.is_some() {
            return Err(Error::Attach("the programs are already attached"));
        }
        let tcx = match hook {
            config::TcAttach::Tcx => true,
            config::TcAttach::Clsact => false,
            config::TcAttach::Auto => {
                KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
            }
        };
        let mut added_clsact = false;
        if !tcx {
            match tc::qdisc_add_clsact(interface) {
                Ok(()) => added_clsact = true,
                Err(e) if is_exists(&e) => {
                    info!(interface, "using the interface's existing clsact qdisc")
                }
                Err(e) => {
                    return Err(Error::Attaching {
                        what: format!("adding the clsact qdisc to {interface}"),
                        source: e.into(),
                    });
                }
            }
        }
        let tc_program: &mut SchedClassifier = self.program(PROG_TC)?;
        let options = if tcx {
            TcAttachOptions::TcxOrder(LinkOrder::default())
        } else {
            TcAttachOptions::Netlink(NlOptions::default())
        };
        let tc = match tc_program.attach_with_options(interface, TcAttachType::Ingress, options) {
            Ok(link) => link,
            Err(e) => {
                if added_clsact {
                    let _ = delete_clsact(interface);
                }
                return Err(program_error(PROG_TC, e));
            }
        };
        let tc_mode = if tcx { TcHook::Tcx } else { TcHook::Clsact };
        let xdp_program: &mut Xdp = self.program(PROG_XDP)?;
        let attached = match mode {
            config::LbMode::XdpGeneric => xdp_program
                .attach(interface, XdpMode::Skb)
                .map(|l| (l, XdpAttach::Generic)),
            _ => xdp_program
                .attach(interface, XdpMode::Driver)
                .map(|l| (l, XdpAttach::Native))
                .or_else(|e| {
                    warn!(interface, error = %e, "native XDP refused; using generic XDP");
                    xdp_program
                        .attach(interface, XdpMode::Skb)
                        .map(|l| (l, XdpAttach::Generic))
                }),
        };
        let (xdp, xdp_mode) = match attached {
            Ok(a) => a,
            Err(e) => {
                let tc_program: &mut SchedClassifier = self.program(PROG_TC)?;
                let _ = tc_program.detach(tc);
                if added_clsact {
                    let _ = delete_clsact(interface);
                }
                return Err(program_error(PROG_XDP, e));
            }
        };
        self.attached = Some(Attached {
            interface: interface.to_owned(),
            xdp,
            xdp_mode,
            tc,
            tc_mode,
            added_clsact,
        });
        Ok(())
    }

    /// How the programs are attached, once they are.
    pub fn attachment(&self) -> Option<(XdpAttach, TcHook)> {
        self.attached.as_ref().map(|a| (a.xdp_mode, a.tc_mode))
    }

    /// The kernel's ids of the XDP and TC programs (as `bpftool prog` shows
    /// them).
    pub fn ids(&self) -> Result<(u32, u32), Error> {
        let xdp: &Xdp = self.program_ref(PROG_XDP)?;
        let tc: &SchedClassifier = self.program_ref(PROG_TC)?;
        let id = |info: Result<aya::programs::ProgramInfo, ProgramError>| {
            info.map(|i| i.id()).map_err(|e| Error::Loading {
                what: "reading program info",
                source: e.into(),
            })
        };
        Ok((id(xdp.info())?, id(tc.info())?))
    }

    /// Detaches XDP, then TC, then removes the clsact qdisc if we added it.
    /// Every step is tried; the first failure is returned.
    pub fn detach(&mut self) -> Result<(), Error> {
        let Some(a) = self.attached.take() else {
            return Ok(());
        };
        let mut first = None;
        let xdp: Result<&mut Xdp, _> = self.program(PROG_XDP);
        if let Err(e) = xdp.and_then(|p| p.detach(a.xdp).map_err(|e| program_error(PROG_XDP, e))) {
            first.get_or_insert(e);
        }
        let tc: Result<&mut SchedClassifier, _> = self.program(PROG_TC);
        if let Err(e) = tc.and_then(|p| p.detach(a.tc).map_err(|e| program_error(PROG_TC, e))) {
            first.get_or_insert(e);
        }
        if a.added_clsact
            && let Err(e) = delete_clsact(&a.interface)
        {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs the XDP program once per `repeat` on `frame` in the kernel
    /// (`BPF_PROG_TEST_RUN`), without attaching it: the action it returns,
    /// the frame as it left (metadata first), and the mean time per run.
    pub fn test_xdp(&self, frame: &[u8], repeat: u32) -> Result<TestXdp, Error> {
        let xdp: &Xdp = self.program_ref(PROG_XDP)?;
        // Room for the metadata the program prepends: the kernel does not
        // reset the frame between repeated runs, so with `repeat` the
        // metadata grows until the kernel refuses more.
        let mut out = vec![0u8; frame.len() + 4096];
        let result = xdp
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: repeat.max(1),
                ..TestRunOptions::new()
            })
            .map_err(|e| program_error(PROG_XDP, e))?;
        out.truncate(result.data_size_out as usize);
        Ok(TestXdp {
            action: result.return_value,
            output: out,
            per_run: result.duration,
        })
    }

    fn program<T>(&mut self, name: &str) -> Result<&mut T, Error>
    where
        for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| Error::Load(format!("no program `{name}`")))?;
        program.try_into().map_err(|e| program_error(name, e))
    }

    fn program_ref<T>(&self, name: &str) -> Result<&T, Error>
    where
        for<'a> &'a T: TryFrom<&'a aya::programs::Program, Error = ProgramError>,
    {
        let program = self
            .ebpf
            .program(name)
            .ok_or_else(|| Error::Load(format!("no program `{name}`")))?;
        program.try_into().map_err(|e| program_error(name, e))
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            warn!(error = %e, "detaching the eBPF programs");
        }
    }
}

/// One `BPF_PROG_TEST_RUN` of the XDP program.
#[derive(Debug)]
pub struct TestXdp {
    /// `XDP_DROP` (1), `XDP_PASS` (2)...
    pub action: u32,
    /// The frame as the program left it, starting with any metadata it
    /// added.
    pub output: Vec<u8>,
    /// The kernel's mean time per run.
    pub per_run: Duration,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

fn is_exists(e: &tc::TcError) -> bool {
    match e {
        tc::TcError::AlreadyAttached => true,
        tc::TcError::NetlinkError(n) => n.raw_os_error() == Some(libc::EEXIST),
        _ => false,
    }
}

/// The OS error at the bottom of an error chain, if there is one.
pub(crate) fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        source = err.source();
    }
    None
}

fn load_error(e: EbpfError) -> Error {
    match refusal(os_error(&e)) {
        Some(refused) => refused(e.into()),
        None => Error::Ebpf(e),
    }
}

fn program_error(name: &str, e: ProgramError) -> Error {
    if let ProgramError::LoadError { verifier_log, .. } = &e {
        return Error::Load(format!(
            "the kernel's verifier refused `{name}`:\n{verifier_log}"
        ));
    }
    if let ProgramError::SyscallError(s) = &e
        && let Some(refused) = refusal(s.io_error.raw_os_error())
    {
        let name = name.to_owned();
        return refused(Box::new(ProgramFailed { name, source: e }));
    }
    if let Some(refused) = refusal(os_error(&e)) {
        return refused(e.into());
    }
    match e {
        ProgramError::SyscallError(SyscallError { call, io_error }) => Error::Attaching {
            what: format!("`{name}`: {call}"),
            source: io_error.into(),
        },
        e => Error::Attaching {
            what: format!("`{name}`"),
            source: e.into(),
        },
    }
}

/// A program's error, with the program's name.
#[derive(Debug, thiserror::Error)]
#[error("`{name}`: {source}")]
struct ProgramFailed {
    name: String,
    source: ProgramError,
}

/// The error a refusal with the OS error `code` makes, if it says that
/// this process may not, or this kernel cannot, run eBPF programs.
fn refusal(code: Option<i32>) -> Option<fn(Cause) -> Error> {
    match code? {
        libc::EPERM | libc::EACCES => Some(|source| Error::BpfRefused { source }),
        libc::ENOSYS => Some(|source| Error::BpfUnavailable { source }),
        _ => None,
    }
}
