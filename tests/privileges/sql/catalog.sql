--
-- catalog: what CREATE EXTENSION quantum_flow sets up for access control, read from the
-- catalogue (no login roles needed): the three NOLOGIN roles and their memberships, the
-- schema's USAGE, tables without any grant, and functions that are SECURITY DEFINER with a
-- pinned search_path and executable by exactly the roles that need them (never PUBLIC).
-- Nothing here names the cluster's superuser, so the output is the same whoever runs it.
--
\set VERBOSITY terse
\pset null '(null)'

-- the three roles: NOLOGIN, no special attributes; INHERIT, so quantum_flow_admin uses the
-- privileges of the roles it is a member of
SELECT rolname, rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolreplication,
       rolbypassrls
FROM pg_roles
WHERE rolname IN ('quantum_flow_admin', 'quantum_flow_client', 'quantum_flow_worker')
ORDER BY rolname;

-- their memberships: quantum_flow_admin is a member of the other two, and none of the three
-- is a member of anything else (grants of these roles to other roles of the cluster, which
-- other databases' tests may make, are not shown)
SELECT m.rolname AS member, r.rolname AS member_of, a.admin_option
FROM pg_auth_members a
JOIN pg_roles r ON r.oid = a.roleid
JOIN pg_roles m ON m.oid = a.member
WHERE m.rolname IN ('quantum_flow_admin', 'quantum_flow_client', 'quantum_flow_worker')
ORDER BY 1, 2;

-- schema privileges, other than the owner's: USAGE for the three roles on quantum_flow, no
-- CREATE, nothing for PUBLIC; on pgmq none of the three has anything (only pgmq's own grant
-- to pg_monitor)
SELECT n.nspname AS schema,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END AS grantee,
       acl.privilege_type
FROM pg_namespace n, aclexplode(n.nspacl) AS acl
WHERE n.nspname IN ('quantum_flow', 'pgmq') AND acl.grantee <> n.nspowner
ORDER BY 1, 2, 3;
SELECT n.nspname AS schema, r.rolsuper AS owner_is_superuser
FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
WHERE n.nspname IN ('quantum_flow', 'pgmq') ORDER BY 1;

-- every relation of schema quantum_flow: owned by a superuser, relacl NULL (no grant to
-- anyone; only the owner can read or write them)
SELECT c.relname, c.relkind, c.relacl, r.rolsuper AS owner_is_superuser
FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
WHERE c.relnamespace = 'quantum_flow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
ORDER BY c.relname;

-- ... and so none of the three roles has any privilege on any of them, and none may even
-- look up names in schema pgmq
SELECT role, count(*) AS relations,
       count(*) FILTER (WHERE has_table_privilege(role, c.oid,
                                'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))
           AS with_any_privilege,
       has_schema_privilege(role, 'pgmq', 'USAGE') AS pgmq_usage,
       has_schema_privilege(role, 'quantum_flow', 'CREATE') AS quantum_flow_create
FROM unnest(ARRAY['quantum_flow_admin', 'quantum_flow_client', 'quantum_flow_worker']) AS role,
     pg_class c
WHERE c.relnamespace = 'quantum_flow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
GROUP BY role ORDER BY role;

-- every function of schema quantum_flow, all owned by a superuser: those that touch the
-- tables are SECURITY DEFINER with search_path pinned to pg_catalog, pg_temp; the others
-- are is_valid_slug (a pure check of its argument), flow_schema (a constant document),
-- jsonb_raw_size (an internal helper of the engine's statements), the four *_row_valid
-- functions (pure checks of a row's columns, which the runtime tables' CHECK constraints
-- call) and on_drop_extension (the DROP EXTENSION event trigger's function). Who may EXECUTE
-- each besides its owner (PUBLIC would show as PUBLIC; a NULL proacl, which means PUBLIC, is
-- expanded with acldefault):
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer, p.proconfig,
       r.rolsuper AS owner_is_superuser,
       (SELECT string_agg(CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END,
                          ', ' ORDER BY 1)
        FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS acl
        WHERE acl.grantee <> p.proowner) AS execute_granted_to
FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
WHERE p.pronamespace = 'quantum_flow'::regnamespace
ORDER BY p.oid::regprocedure::text;

-- the same as what each role can execute, membership included: the admin can do everything
-- the client and the worker can; PUBLIC can execute nothing
SELECT p.proname AS function,
       has_function_privilege('quantum_flow_client', p.oid, 'EXECUTE') AS client,
       has_function_privilege('quantum_flow_worker', p.oid, 'EXECUTE') AS worker,
       has_function_privilege('quantum_flow_admin', p.oid, 'EXECUTE') AS admin,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS acl
               WHERE acl.grantee = 0) AS public
FROM pg_proc p
WHERE p.pronamespace = 'quantum_flow'::regnamespace
ORDER BY p.proname;

-- the DROP EXTENSION hook is an event trigger owned by a superuser
SELECT e.evtname, e.evtevent, e.evttags, e.evtfoid::regproc, r.rolsuper AS owner_is_superuser
FROM pg_event_trigger e JOIN pg_roles r ON r.oid = e.evtowner
WHERE e.evtname LIKE 'quantum\_flow%';
