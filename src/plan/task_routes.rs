//! Route changes in a task namespace (pure).

use crate::model::route::{LiveRoute, ROUTE_PROTOCOL, RouteOp, RouteSpec, TaskAction};
/// Route changes that take `live` (routes to the wanted destinations) to `want`
/// (apply/check) or remove ours (remove). Pure.
pub fn plan_routes(action: TaskAction, want: &[RouteSpec], live: &[LiveRoute]) -> Vec<RouteOp> {
    let mut ops = Vec::new();
    for spec in want {
        let same_prefix: Vec<&LiveRoute> =
            live.iter().filter(|l| l.dest == spec.dest && l.prefix_len == spec.prefix_len).collect();
        match action {
            TaskAction::Apply | TaskAction::Check => {
                for l in same_prefix.iter().filter(|l| !l.satisfies(spec)) {
                    ops.push(RouteOp::DeleteInTheWay { route: (*l).clone() });
                }
                if !same_prefix.iter().any(|l| l.satisfies(spec)) {
                    ops.push(RouteOp::Add { spec: *spec });
                }
            }
            TaskAction::Remove => {
                if same_prefix.iter().any(|l| l.satisfies(spec) && l.protocol == ROUTE_PROTOCOL) {
                    ops.push(RouteOp::Delete { spec: *spec });
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;
    use crate::desired::task_routes::imds_routes;
    use crate::model::route::RouteKind;

    fn live(spec: &RouteSpec, kind: Option<RouteKind>, protocol: u8) -> LiveRoute {
        LiveRoute { dest: spec.dest, prefix_len: spec.prefix_len, kind, protocol, metric: Some(100) }
    }

    #[test]
    fn apply_adds_what_is_missing_and_replaces_what_is_in_the_way() {
        let want = imds_routes(&default_config());
        assert_eq!(want.len(), 2);
        let ops = plan_routes(TaskAction::Apply, &want, &[]);
        assert_eq!(ops, vec![RouteOp::Add { spec: want[0] }, RouteOp::Add { spec: want[1] }]);
        // The agent's own blackhole (another protocol) already does the job.
        let l = vec![live(&want[0], Some(RouteKind::Blackhole), 4), live(&want[1], None, 3)];
        assert_eq!(
            plan_routes(TaskAction::Apply, &want, &l),
            vec![RouteOp::DeleteInTheWay { route: l[1].clone() }, RouteOp::Add { spec: want[1] }]
        );
        assert_eq!(plan_routes(TaskAction::Check, &want, &l).len(), 2);
    }

    #[test]
    fn remove_deletes_only_our_routes() {
        let want = imds_routes(&default_config());
        let l = vec![
            live(&want[0], Some(RouteKind::Blackhole), ROUTE_PROTOCOL),
            live(&want[1], Some(RouteKind::Blackhole), 4),
        ];
        assert_eq!(plan_routes(TaskAction::Remove, &want, &l), vec![RouteOp::Delete { spec: want[0] }]);
        assert!(plan_routes(TaskAction::Remove, &want, &[]).is_empty());
    }
}
