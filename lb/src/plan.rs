//! What the fan-out should do, as the config says: the ship's address,
//! whether malformed packets are dropped, and the replicas, each with the
//! counter slot its copies are counted in.

use std::net::{IpAddr, SocketAddr};

use config::{Config, MAX_REPLICAS, ReplicaId};
use lb_abi::{FAMILY_V4, FAMILY_V6, Plan, Target};

use crate::Error;
use crate::nexthop::Hop;

const _: () = assert!(MAX_REPLICAS == lb_abi::MAX_REPLICAS);

/// The part of the config the fan-out acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub ship: SocketAddr,
    pub drop_malformed: bool,
    /// In the config's order (by id).
    pub replicas: Vec<Replica>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    pub id: ReplicaId,
    pub ames: SocketAddr,
    pub slot: u8,
}

impl Desired {
    /// Reads the config, giving replicas that were in `slots` before the
    /// same slots again.
    pub fn new(config: &Config, slots: &mut Slots) -> Result<Desired, Error> {
        let ship = config.ship.public;
        for r in &config.replicas {
            if r.ames.is_ipv4() != ship.is_ipv4() {
                return Err(Error::Config(format!(
                    "replica {}: its ames address {} is IPv{} but ship.public {} is IPv{}; \
                     the edge box rewrites addresses in place and cannot translate between families",
                    r.id,
                    r.ames,
                    if r.ames.is_ipv4() { 4 } else { 6 },
                    ship,
                    if ship.is_ipv4() { 4 } else { 6 },
                )));
            }
        }
        let ids: Vec<ReplicaId> = config.replicas.iter().map(|r| r.id).collect();
        let assigned = slots.assign(&ids);
        let replicas = config
            .replicas
            .iter()
            .zip(assigned)
            .map(|(r, slot)| Replica {
                id: r.id,
                ames: r.ames,
                slot,
            })
            .collect();
        Ok(Desired {
            ship,
            drop_malformed: config.lb.drop_malformed,
            replicas,
        })
    }

    pub fn addrs(&self) -> Vec<IpAddr> {
        self.replicas.iter().map(|r| r.ames.ip()).collect()
    }

    /// The kernel programs' plan, given each replica's next hop (in order).
    pub fn kernel_plan(&self, hops: &[Hop]) -> Plan {
        let mut plan = Plan::OFF;
        plan.ship_addr = words(self.ship.ip());
        plan.ship_port = port(self.ship.port());
        plan.family = if self.ship.is_ipv4() {
            FAMILY_V4
        } else {
            FAMILY_V6
        };
        plan.drop_malformed = u8::from(self.drop_malformed);
        for (i, (replica, hop)) in self
            .replicas
            .iter()
            .zip(hops)
            .enumerate()
            .take(MAX_REPLICAS)
        {
            let mut target = Target {
                addr: words(replica.ames.ip()),
                port: port(replica.ames.port()),
                slot: replica.slot,
                ..Target::EMPTY
            };
            if let Hop::Ready {
                ifindex,
                smac,
                dmac,
            } = *hop
            {
                target.ready = 1;
                target.ifindex = ifindex;
                target.smac = smac;
                target.dmac = dmac;
            }
            plan.targets[i] = target;
            plan.len = i as u32 + 1;
        }
        plan
    }
}

/// An address as the programs compare it: network byte order words.
fn words(ip: IpAddr) -> [u32; 4] {
    let mut words = [0u32; 4];
    match ip {
        IpAddr::V4(v4) => words[0] = u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(v6) => {
            for (word, chunk) in words.iter_mut().zip(v6.octets().chunks_exact(4)) {
                *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
    }
    words
}

/// A port as the packet holds it.
fn port(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

/// Which replica owns which per-replica counter slot. A replica keeps its
/// slot for as long as it stays in the config; a freed slot goes to the next
/// new replica.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    owners: [Option<ReplicaId>; MAX_REPLICAS],
}

impl Slots {
    /// Slots for `ids`, in order. At most [`MAX_REPLICAS`] ids (the config
    /// guarantees it); more get slot 0 so nothing panics.
    pub fn assign(&mut self, ids: &[ReplicaId]) -> Vec<u8> {
        for owner in &mut self.owners {
            if owner.is_some_and(|o| !ids.contains(&o)) {
                *owner = None;
            }
        }
        ids.iter()
            .map(|id| {
                if let Some(slot) = self.owners.iter().position(|o| *o == Some(*id)) {
                    return slot as u8;
                }
                match self.owners.iter().position(Option::is_none) {
                    Some(slot) => {
                        self.owners[slot] = Some(*id);
                        slot as u8
                    }
                    None => 0,
                }
            })
            .collect()
    }

    pub fn owner(&self, slot: usize) -> Option<ReplicaId> {
        self.owners.get(slot).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ReplicaId {
        ReplicaId::new(n).unwrap()
    }

    #[test]
    fn slots_stay_with_their_replica() {
        let mut slots = Slots::default();
        assert_eq!(slots.assign(&[id(1), id(2), id(3)]), [0, 1, 2]);
        // 2 leaves, 4 arrives and takes the freed slot; 1 and 3 keep theirs.
        assert_eq!(slots.assign(&[id(1), id(3), id(4)]), [0, 2, 1]);
        assert_eq!(slots.owner(1), Some(id(4)));
        assert_eq!(slots.assign(&[id(3)]), [2]);
        assert_eq!(slots.owner(0), None);
    }

    #[test]
    fn addresses_are_in_network_order() {
        let v4: IpAddr = "10.0.1.2".parse().unwrap();
        assert_eq!(words(v4)[0].to_ne_bytes(), [10, 0, 1, 2]);
        let v6: IpAddr = "fd00::1:2".parse().unwrap();
        let w = words(v6);
        assert_eq!(w[0].to_ne_bytes(), [0xfd, 0, 0, 0]);
        assert_eq!(w[3].to_ne_bytes(), [0, 1, 0, 2]);
        assert_eq!(port(34543).to_ne_bytes(), 34543u16.to_be_bytes());
    }

    #[test]
    fn unresolved_replicas_are_in_the_plan_but_not_ready() {
        let desired = Desired {
            ship: "192.0.2.1:34543".parse().unwrap(),
            drop_malformed: true,
            replicas: vec![
                Replica {
                    id: id(1),
                    ames: "10.0.1.1:4000".parse().unwrap(),
                    slot: 0,
                },
                Replica {
                    id: id(2),
                    ames: "10.0.1.2:4000".parse().unwrap(),
                    slot: 5,
                },
            ],
        };
        let hops = [
            Hop::Ready {
                ifindex: 3,
                smac: [2, 0, 0, 0, 0, 1],
                dmac: [2, 0, 0, 0, 0, 2],
            },
            Hop::Unresolved(crate::nexthop::Unresolved::NoNeighbour),
        ];
        let plan = desired.kernel_plan(&hops);
        assert_eq!(plan.family, FAMILY_V4);
        assert_eq!(plan.len, 2);
        assert_eq!(plan.targets[0].ready, 1);
        assert_eq!(plan.targets[0].ifindex, 3);
        assert_eq!(plan.targets[1].ready, 0);
        assert_eq!(plan.targets[1].slot, 5);
        assert_eq!(plan.drop_malformed, 1);
    }
}
